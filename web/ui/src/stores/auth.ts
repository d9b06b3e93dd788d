import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api, maybeSignedIn, onSession, refresh, setSession, TRANSPORT_HEADER } from '@/api/client'
import type { TokenResponse, User } from '@/api/types'

export const useAuth = defineStore('auth', () => {
  const user = ref<User | null>(null)
  const restored = ref(false)
  let restoring: Promise<void> | null = null

  onSession((token, sent) => {
    if (!token) user.value = null
    else if (sent) user.value = sent as User
  })

  const signedIn = computed(() => user.value !== null)
  const canStream = computed(() => user.value?.role === 'creator' || user.value?.role === 'admin')
  const isAdmin = computed(() => user.value?.role === 'admin')

  /** Once per page load: the refresh cookie, if any, becomes a session. */
  function restore(): Promise<void> {
    restoring ??= (async () => {
      if (maybeSignedIn()) await refresh()
      restored.value = true
    })()
    return restoring
  }

  function accept(response: TokenResponse): void {
    setSession(response.access_token, response.expires_in, response.user)
  }

  async function login(username: string, password: string): Promise<void> {
    accept(await api<TokenResponse>('/api/auth/login', {
      method: 'POST', body: { username, password }, auth: false, headers: TRANSPORT_HEADER,
    }))
  }

  async function register(username: string, email: string, password: string): Promise<void> {
    accept(await api<TokenResponse>('/api/auth/register', {
      method: 'POST', body: { username, email, password }, auth: false, headers: TRANSPORT_HEADER,
    }))
  }

  async function logout(everywhere = false): Promise<void> {
    try {
      await api('/api/auth/logout', {
        method: 'POST', body: everywhere ? { everywhere: true } : {}, headers: TRANSPORT_HEADER,
      })
    } finally {
      setSession(null)
    }
  }

  async function reload(): Promise<void> {
    user.value = await api<User>('/api/users/me')
  }

  return { user, restored, signedIn, canStream, isAdmin, restore, login, register, logout, reload }
})
