// The auth store against a scripted fetch (the browser tests use the real server).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { accessToken, setSession } from '@/api/client'
import { useAuth } from '@/stores/auth'

const alice = { id: 1, username: 'alice', email: 'a@example.com', email_verified: true, role: 'creator', bio: null, avatar_url: null, is_active: true, created_at: '2026-01-01T00:00:00Z' }

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

let calls: { url: string; init: RequestInit }[] = []
function serve(handler: (url: string, init: RequestInit) => Response): void {
  calls = []
  vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit) => {
    calls.push({ url, init })
    return handler(url, init)
  }))
}

beforeEach(() => {
  setActivePinia(createPinia())
  setSession(null)
  localStorage.clear()
})
afterEach(() => {
  vi.unstubAllGlobals()
  setSession(null)
})

describe('auth store', () => {
  it('logs in in cookie mode and keeps the token in memory only', async () => {
    serve(() => json(200, { access_token: 'tok', refresh_token: null, token_type: 'bearer', expires_in: 900, user: alice }))
    const auth = useAuth()
    await auth.login('alice', 'pw')
    expect(auth.user?.username).toBe('alice')
    expect(auth.canStream).toBe(true)
    expect(auth.isAdmin).toBe(false)
    expect(accessToken()).toBe('tok')
    expect((calls[0].init.headers as Record<string, string>)['X-Token-Transport']).toBe('cookie')
    // Only the hint that this browser signed in; never a token.
    expect(Object.keys(localStorage)).toEqual(['streamd.signed-in'])
    expect(localStorage.getItem('streamd.signed-in')).toBe('1')
    expect(sessionStorage.length).toBe(0)
  })

  it('restores a session from the refresh cookie once per page load', async () => {
    localStorage.setItem('streamd.signed-in', '1')
    serve(() => json(200, { access_token: 'r', expires_in: 900, user: alice }))
    const auth = useAuth()
    await Promise.all([auth.restore(), auth.restore()])
    expect(calls.filter((c) => c.url === '/api/auth/refresh')).toHaveLength(1)
    expect(auth.restored).toBe(true)
    expect(auth.signedIn).toBe(true)
  })

  it('stays signed out when the cookie is gone, and forgets that it signed in', async () => {
    localStorage.setItem('streamd.signed-in', '1')
    serve(() => json(401, { error: { code: 'unauthorized', message: 'no session' } }))
    const auth = useAuth()
    await auth.restore()
    expect(auth.signedIn).toBe(false)
    expect(localStorage.getItem('streamd.signed-in')).toBeNull()
  })

  it('does not ask for a session in a browser that never signed in', async () => {
    serve(() => json(500, {}))
    const auth = useAuth()
    await auth.restore()
    expect(calls).toHaveLength(0)
    expect(auth.restored).toBe(true)
  })

  it('forgets the user on logout even when the server cannot be reached', async () => {
    serve(() => json(200, { access_token: 'tok', expires_in: 900, user: alice }))
    const auth = useAuth()
    await auth.login('alice', 'pw')
    vi.stubGlobal('fetch', vi.fn(async () => { throw new TypeError('offline') }))
    await expect(auth.logout(true)).rejects.toThrow()
    expect(auth.signedIn).toBe(false)
    expect(accessToken()).toBeNull()
  })

  it('signs out everywhere with the everywhere flag', async () => {
    serve(() => json(200, { access_token: 'tok', expires_in: 900, user: alice }))
    const auth = useAuth()
    await auth.login('alice', 'pw')
    serve(() => new Response(null, { status: 204 }))
    await auth.logout(true)
    expect(JSON.parse(String(calls[0].init.body))).toEqual({ everywhere: true })
  })
})
