// The one place that talks HTTP to streamd's API.
//
// The access token lives in memory only (never in storage a script injected later could read);
// the refresh token is an HttpOnly cookie the browser sends to /api/auth alone, selected by the
// X-Token-Transport header (which also makes another site's forged request need a CORS
// preflight it cannot pass). A 401 on a call retries once after a refresh; concurrent 401s share
// one refresh, since each refresh token works once.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: { field: string; message: string }[] = [],
    readonly retryAfter: number | null = null,
    /** The error's details when they are an object, not a list of fields (a 402's price, a
     * refund's limit). */
    readonly info: Record<string, unknown> | null = null,
  ) {
    super(message)
  }
}

export const TRANSPORT_HEADER = { 'X-Token-Transport': 'cookie' }

interface Session {
  token: string | null
  expiresAt: number // ms since the epoch
}

const session: Session = { token: null, expiresAt: 0 }
// Whether this browser signed in (not a secret: the cookie is the credential). Most visitors
// never did, and their page need not ask the server for a session it does not have.
const HINT_KEY = 'streamd.signed-in'

function setHint(on: boolean): void {
  try {
    if (on) localStorage.setItem(HINT_KEY, '1')
    else localStorage.removeItem(HINT_KEY)
  } catch {
    // storage unavailable: refresh() then always asks
  }
}

export function maybeSignedIn(): boolean {
  try {
    return localStorage.getItem(HINT_KEY) !== null
  } catch {
    return true
  }
}
let refreshing: Promise<RefreshResult> | null = null
let refreshTimer: ReturnType<typeof setTimeout> | null = null
type Listener = (token: string | null, user: unknown) => void
const listeners = new Set<Listener>()

/** Called with the new token (and user, when the server sent one) after every change. */
export function onSession(listener: Listener): () => void {
  listeners.add(listener)
  return () => listeners.delete(listener)
}

function schedule(ms: number): void {
  if (refreshTimer) clearTimeout(refreshTimer)
  // setTimeout takes at most 2^31-1 ms (24.8 days); longer fires at once.
  refreshTimer = setTimeout(() => void refresh(), Math.min(ms, 2 ** 31 - 1))
}

export function accessToken(): string | null {
  return session.token
}

export function setSession(token: string | null, expiresIn = 0, user: unknown = null): void {
  session.token = token
  setHint(token !== null)
  session.expiresAt = token ? Date.now() + expiresIn * 1000 : 0
  if (refreshTimer) clearTimeout(refreshTimer)
  refreshTimer = null
  // Renew at 80 % of the lifetime, so requests rarely meet an expired token.
  if (token && expiresIn > 0) schedule(Math.max(5_000, expiresIn * 800))
  for (const listener of listeners) listener(token, user)
}

async function parseError(response: Response): Promise<ApiError> {
  let code = 'http_' + response.status
  let message = response.statusText || 'request failed'
  let details: { field: string; message: string }[] = []
  let info: Record<string, unknown> | null = null
  try {
    const body = await response.json()
    if (body && body.error) {
      code = body.error.code ?? code
      message = body.error.message ?? message
      const raw: unknown = body.error.details
      if (Array.isArray(raw)) details = raw
      else if (raw && typeof raw === 'object') info = raw as Record<string, unknown>
    }
  } catch {
    // not JSON: keep the status line
  }
  const retry = Number(response.headers.get('Retry-After'))
  return new ApiError(response.status, code, message, details, Number.isFinite(retry) && retry > 0 ? retry : null, info)
}

/** 'ok': a new access token; 'rejected': the server says there is no session (the user is
 * signed out); 'failed': no answer worth believing (offline, 5xx, 429): the session stands and
 * a later attempt retries, so a restarting server signs nobody out. */
export type RefreshResult = 'ok' | 'rejected' | 'failed'
const RETRY_REFRESH_MS = 10_000

/** Trade the refresh cookie for a new access token. */
export function refresh(): Promise<RefreshResult> {
  if (refreshing) return refreshing
  const started = (async (): Promise<RefreshResult> => {
    try {
      const response = await fetch('/api/auth/refresh', {
        method: 'POST',
        credentials: 'same-origin',
        headers: TRANSPORT_HEADER,
      })
      if (response.status === 401) {
        setSession(null)
        return 'rejected'
      }
      if (!response.ok) throw new Error(`refresh: HTTP ${response.status}`)
      const body = await response.json()
      setSession(body.access_token, body.expires_in, body.user)
      return 'ok'
    } catch {
      if (session.token) schedule(RETRY_REFRESH_MS)
      return 'failed'
    } finally {
      refreshing = null
    }
  })()
  refreshing = started
  return started
}

export interface RequestOptions {
  method?: string
  body?: unknown
  query?: Record<string, string | number | boolean | null | undefined>
  auth?: boolean // send the access token (default: when there is one)
  signal?: AbortSignal
  headers?: Record<string, string>
}

let onUnauthorized: (() => void) | null = null

/** What to do when a call still gets 401 after a refresh (the router sends the user to login). */
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler
}

export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const url = new URL(path, window.location.origin)
  for (const [key, value] of Object.entries(options.query ?? {})) {
    if (value !== null && value !== undefined && value !== '') url.searchParams.set(key, String(value))
  }
  const send = async (): Promise<Response> => {
    const headers: Record<string, string> = { Accept: 'application/json', ...options.headers }
    if (options.body !== undefined) headers['Content-Type'] = 'application/json'
    if (options.auth !== false && session.token) headers.Authorization = `Bearer ${session.token}`
    return fetch(url.pathname + url.search, {
      method: options.method ?? 'GET',
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      credentials: 'same-origin',
      signal: options.signal,
    })
  }
  let response = await send()
  if (response.status === 401 && session.token && options.auth !== false) {
    const renewed = await refresh()
    if (renewed === 'ok') response = await send()
    // Signed out only when the server said so; a refresh that got no answer keeps the session.
    if (renewed === 'rejected' || (renewed === 'ok' && response.status === 401)) {
      setSession(null)
      onUnauthorized?.()
    }
  }
  return readResponse<T>(response)
}

/** A response's JSON, or its JSON error as an ApiError. */
export async function readResponse<T>(response: Response): Promise<T> {
  if (!response.ok) throw await parseError(response)
  if (response.status === 204) return undefined as T
  return (await response.json()) as T
}
