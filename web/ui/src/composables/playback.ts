// Paid (and private) playback: /hls serves a sold live's or video's files only with the cookie
// POST /api/{lives,videos}/{id}/playback sets, so the player starts only after that call says
// 200. A 402 means the viewer has not bought it (the page shows a paywall); a signed-out viewer
// is asked to sign in. The cookie expires: it is renewed before it does, so a long live keeps
// playing.
import { onBeforeUnmount, shallowRef } from 'vue'
import { api, ApiError } from '@/api/client'
import type { PlaybackGrant, Price } from '@/api/types'

export type Gate =
  | { state: 'idle' } // nothing asked yet
  | { state: 'checking' }
  | { state: 'open' } // the player may start
  | { state: 'locked'; price: Price | null } // 402: buy it first
  | { state: 'sign_in'; price: Price | null } // signed out: sign in first
  | { state: 'error'; error: unknown }

export type PlaybackKind = 'lives' | 'videos'

function priceOf(error: ApiError, fallback: Price | null): Price | null {
  const price = error.info?.price as Price | undefined
  return price && typeof price.amount === 'number' && typeof price.display === 'string' ? price : fallback
}

/** Ask for the playback cookie once: the gate it opens (or not). */
export async function askPlayback(
  kind: PlaybackKind, id: number, price: Price | null, signedIn: boolean,
): Promise<{ gate: Gate; grant: PlaybackGrant | null }> {
  if (!signedIn && price) return { gate: { state: 'sign_in', price }, grant: null }
  try {
    const grant = await api<PlaybackGrant>(`/api/${kind}/${id}/playback`, { method: 'POST', body: {} })
    return { gate: { state: 'open' }, grant }
  } catch (exc) {
    if (exc instanceof ApiError && exc.code === 'payment_required') {
      return { gate: { state: 'locked', price: priceOf(exc, price) }, grant: null }
    }
    if (exc instanceof ApiError && exc.status === 401 && price) return { gate: { state: 'sign_in', price }, grant: null }
    throw exc
  }
}

/** When to ask again for a cookie that expires at `expiresAt`: at 80 % of what is left (at
 * least 10 s from now); null when it does not expire. */
export function renewDelay(expiresAt: string | null, now = Date.now()): number | null {
  if (!expiresAt) return null
  const left = Date.parse(expiresAt) - now
  if (!Number.isFinite(left)) return null
  return Math.min(2 ** 31 - 1, Math.max(10_000, left * 0.8))
}

/** A page's gate, renewed while it is open. */
export function usePlaybackGate(kind: PlaybackKind) {
  const gate = shallowRef<Gate>({ state: 'idle' })
  let timer: ReturnType<typeof setTimeout> | null = null
  let generation = 0

  function clear(): void {
    if (timer) clearTimeout(timer)
    timer = null
  }

  async function check(id: number, price: Price | null, signedIn: boolean, { quiet = false } = {}): Promise<void> {
    clear()
    const mine = ++generation
    if (!quiet) gate.value = { state: 'checking' }
    try {
      const { gate: next, grant } = await askPlayback(kind, id, price, signedIn)
      if (mine !== generation) return
      // A renewal that still opens keeps the same object: the player is not restarted.
      if (!(quiet && next.state === 'open' && gate.value.state === 'open')) gate.value = next
      const delay = renewDelay(grant?.expires_at ?? null)
      if (next.state === 'open' && delay !== null) {
        timer = setTimeout(() => void check(id, price, signedIn, { quiet: true }), delay)
      }
    } catch (exc) {
      if (mine !== generation) return
      // A renewal that failed for the network keeps playing what it has and tries again.
      if (quiet && gate.value.state === 'open') timer = setTimeout(() => void check(id, price, signedIn, { quiet: true }), 15_000)
      else gate.value = { state: 'error', error: exc }
    }
  }

  /** Nothing to ask (a free, public item): the player may start. */
  function open(): void {
    clear()
    generation += 1
    gate.value = { state: 'open' }
  }

  function reset(): void {
    clear()
    generation += 1
    gate.value = { state: 'idle' }
  }

  onBeforeUnmount(clear)
  return { gate, check, open, reset }
}
