// The API client against a scripted fetch (a unit test: the browser tests use the real server).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { api, ApiError, accessToken, refresh, setSession, setUnauthorizedHandler } from '@/api/client'

type Handler = (url: string, init: RequestInit) => Response | Promise<Response>

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } })
}

let calls: { url: string; init: RequestInit }[] = []
function serve(handler: Handler): void {
  calls = []
  vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit) => {
    calls.push({ url, init })
    return handler(url, init)
  }))
}

beforeEach(() => setSession(null))
afterEach(() => {
  vi.unstubAllGlobals()
  setSession(null)
})

describe('api()', () => {
  it('sends the access token and parses JSON', async () => {
    setSession('tok-1', 900)
    serve(() => json(200, { ok: true }))
    expect(await api('/api/users/me')).toEqual({ ok: true })
    expect((calls[0].init.headers as Record<string, string>).Authorization).toBe('Bearer tok-1')
  })

  it('turns the JSON error into an ApiError with code, details and Retry-After', async () => {
    serve(() => json(429, { error: { code: 'too_many_attempts', message: 'slow down', details: [{ field: 'x', message: 'y' }] } }, { 'Retry-After': '30' }))
    const error = (await api('/api/auth/login', { method: 'POST', body: {} }).catch((e: unknown) => e)) as ApiError
    expect(error).toBeInstanceOf(ApiError)
    expect(error.status).toBe(429)
    expect(error.code).toBe('too_many_attempts')
    expect(error.details).toEqual([{ field: 'x', message: 'y' }])
    expect(error.retryAfter).toBe(30)
  })

  it('refreshes once on 401 and retries with the new token', async () => {
    setSession('old', 900)
    serve((url, init) => {
      if (url === '/api/auth/refresh') return json(200, { access_token: 'new', expires_in: 900, user: { id: 1 } })
      const auth = (init.headers as Record<string, string>).Authorization
      return auth === 'Bearer new' ? json(200, { ok: 1 }) : json(401, { error: { code: 'unauthorized', message: 'expired' } })
    })
    expect(await api('/api/users/me')).toEqual({ ok: 1 })
    expect(accessToken()).toBe('new')
    const refreshCall = calls.find((c) => c.url === '/api/auth/refresh')!
    expect((refreshCall.init.headers as Record<string, string>)['X-Token-Transport']).toBe('cookie')
    expect(refreshCall.init.credentials).toBe('same-origin')
  })

  it('shares one refresh among concurrent 401s (a refresh token works once)', async () => {
    setSession('old', 900)
    let refreshes = 0
    serve(async (url, init) => {
      if (url === '/api/auth/refresh') {
        refreshes += 1
        await new Promise((r) => setTimeout(r, 10))
        return json(200, { access_token: 'new', expires_in: 900, user: { id: 1 } })
      }
      const auth = (init.headers as Record<string, string>).Authorization
      return auth === 'Bearer new' ? json(200, {}) : json(401, { error: { code: 'unauthorized', message: 'x' } })
    })
    await Promise.all([api('/a'), api('/b'), api('/c')])
    expect(refreshes).toBe(1)
  })

  it('a 401 during an outage does not sign the user out', async () => {
    setSession('old', 900)
    let unauthorized = 0
    setUnauthorizedHandler(() => (unauthorized += 1))
    serve((url) => (url === '/api/auth/refresh' ? json(502, {}) : json(401, { error: { code: 'unauthorized', message: 'x' } })))
    await expect(api('/api/users/me')).rejects.toBeInstanceOf(ApiError)
    expect(accessToken()).toBe('old')
    expect(unauthorized).toBe(0)
  })

  it('drops the session when the refresh is rejected', async () => {
    setSession('old', 900)
    serve(() => json(401, { error: { code: 'unauthorized', message: 'x' } }))
    await expect(api('/api/users/me')).rejects.toBeInstanceOf(ApiError)
    expect(accessToken()).toBeNull()
  })
})

describe('refresh()', () => {
  it('is rejected without a cookie session and ok with one', async () => {
    serve(() => json(401, { error: { code: 'unauthorized', message: 'no cookie' } }))
    expect(await refresh()).toBe('rejected')
    serve(() => json(200, { access_token: 'a', expires_in: 900, user: { id: 2 } }))
    expect(await refresh()).toBe('ok')
    expect(accessToken()).toBe('a')
  })

  it('keeps the session when the server cannot answer (a restart, a 503), and tries again', async () => {
    vi.useFakeTimers()
    try {
      setSession('old', 900)
      serve(() => json(503, { error: { code: 'busy', message: 'restarting' } }))
      expect(await refresh()).toBe('failed')
      expect(accessToken()).toBe('old')
      serve(() => json(200, { access_token: 'new', expires_in: 900, user: { id: 2 } }))
      await vi.advanceTimersByTimeAsync(10_500)
      expect(accessToken()).toBe('new')
    } finally {
      vi.useRealTimers()
    }
  })

  it('renews the token before it expires', async () => {
    vi.useFakeTimers()
    try {
      serve(() => json(200, { access_token: 'later', expires_in: 900, user: { id: 2 } }))
      setSession('now', 100) // renewed at 80 s
      await vi.advanceTimersByTimeAsync(79_000)
      expect(calls.length).toBe(0)
      await vi.advanceTimersByTimeAsync(2_000)
      expect(calls.map((c) => c.url)).toEqual(['/api/auth/refresh'])
      expect(accessToken()).toBe('later')
    } finally {
      vi.useRealTimers()
    }
  })
})
