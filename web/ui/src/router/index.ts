import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { setUnauthorizedHandler } from '@/api/client'
import { useAuth } from '@/stores/auth'
import type { Role } from '@/api/types'

declare module 'vue-router' {
  interface RouteMeta {
    auth?: boolean // signed in
    roles?: Role[] // one of these roles
    guestOnly?: boolean // login, register: a signed-in user goes to the dashboard
    title?: string // i18n key of the page title
  }
}

export const routes: RouteRecordRaw[] = [
  { path: '/', name: 'home', component: () => import('@/views/HomeView.vue'), meta: { title: 'nav.home' } },
  { path: '/login', name: 'login', component: () => import('@/views/LoginView.vue'), meta: { guestOnly: true, title: 'auth.login' } },
  { path: '/register', name: 'register', component: () => import('@/views/RegisterView.vue'), meta: { guestOnly: true, title: 'auth.register' } },
  { path: '/verify-email', name: 'verify-email', component: () => import('@/views/VerifyEmailView.vue'), meta: { title: 'auth.verify_title' } },
  { path: '/forgot-password', name: 'forgot-password', component: () => import('@/views/ForgotPasswordView.vue'), meta: { title: 'auth.forgot_title' } },
  { path: '/reset-password', name: 'reset-password', component: () => import('@/views/ResetPasswordView.vue'), meta: { title: 'auth.reset_title' } },
  { path: '/dashboard', name: 'dashboard', component: () => import('@/views/DashboardView.vue'), meta: { auth: true, title: 'nav.dashboard' } },
  { path: '/profile', name: 'profile', component: () => import('@/views/ProfileView.vue'), meta: { auth: true, title: 'nav.profile' } },
  { path: '/lives', name: 'lives', component: () => import('@/views/LivesView.vue'), meta: { title: 'nav.lives' } },
  { path: '/lives/create', name: 'live-create', component: () => import('@/views/LiveCreateView.vue'), meta: { auth: true, roles: ['creator', 'admin'], title: 'live.create_title' } },
  { path: '/lives/:id(\\d+)', name: 'live', component: () => import('@/views/LiveWatchView.vue'), props: true, meta: { title: 'live.watch_title' } },
  { path: '/lives/:id(\\d+)/stream', name: 'studio', component: () => import('@/views/LiveStudioView.vue'), props: true, meta: { auth: true, roles: ['creator', 'admin'], title: 'studio.title' } },
  { path: '/videos', name: 'videos', component: () => import('@/views/VideosView.vue'), meta: { title: 'videos.title' } },
  { path: '/videos/upload', name: 'video-upload', component: () => import('@/views/VideoUploadView.vue'), meta: { auth: true, roles: ['creator', 'admin'], title: 'upload.title' } },
  { path: '/videos/:id(\\d+)', name: 'video', component: () => import('@/views/VideoView.vue'), props: true, meta: { title: 'video.title' } },
  { path: '/payments', name: 'payments', component: () => import('@/views/PaymentsView.vue'), meta: { auth: true, title: 'pay.title' } },
  { path: '/payments/create', name: 'payment-create', component: () => import('@/views/PaymentCreateView.vue'), meta: { auth: true, title: 'pay.create_title' } },
  { path: '/payments/:id(\\d+)', name: 'order', component: () => import('@/views/OrderView.vue'), props: true, meta: { auth: true, title: 'pay.order_title' } },
  { path: '/admin/users', name: 'admin-users', component: () => import('@/views/AdminUsersView.vue'), meta: { auth: true, roles: ['admin'], title: 'admin.users_title' } },
  { path: '/forbidden', name: 'forbidden', component: () => import('@/views/NotFoundView.vue'), props: { forbidden: true }, meta: { title: 'errors.forbidden_title' } },
  { path: '/:pathMatch(.*)*', name: 'not-found', component: () => import('@/views/NotFoundView.vue'), meta: { title: 'errors.not_found_title' } },
]

export const router = createRouter({
  history: createWebHistory(),
  routes,
  scrollBehavior: (_to, _from, saved) => saved ?? { top: 0 },
})

router.beforeEach(async (to) => {
  const auth = useAuth()
  // A public page renders at once (the header catches up when the session is restored); only
  // pages that depend on who you are wait for the refresh cookie's answer.
  const restoring = auth.restore()
  if (!to.meta.auth && !to.meta.roles && !to.meta.guestOnly) return true
  await restoring
  if (to.meta.auth && !auth.signedIn) return { name: 'login', query: { next: to.fullPath } }
  if (to.meta.guestOnly && auth.signedIn) return { name: 'dashboard' }
  if (to.meta.roles && auth.user && !to.meta.roles.includes(auth.user.role)) {
    return { name: 'forbidden', query: { from: to.fullPath } }
  }
  return true
})

setUnauthorizedHandler(() => {
  const current = router.currentRoute.value
  if (current.name !== 'login') void router.push({ name: 'login', query: { next: current.fullPath } })
})

/** Only same-site paths are followed after a login (an open redirect otherwise). */
export function safeNext(next: unknown): string {
  return typeof next === 'string' && next.startsWith('/') && !next.startsWith('//') ? next : '/dashboard'
}
