// Low-latency playback of a live over WebRTC (WHEP, RFC 9725): a receive-only peer connection
// whose offer is POSTed to the live's whep_url. The answer comes back in a 201's body and the
// session's resource in its Location header, which a DELETE ends. The server counts a WHEP
// viewer itself (no heartbeat). Any failure ends the session: the page falls back to HLS.
import { getCurrentScope, onScopeDispose, ref, shallowRef, triggerRef } from 'vue'

export type WhepState = 'idle' | 'connecting' | 'connected' | 'failed'

/** The viewer's choice of low latency, remembered in this browser. */
export const LOW_LATENCY_KEY = 'streamd.lowLatency'

export function lowLatencySaved(): boolean {
  try {
    return localStorage.getItem(LOW_LATENCY_KEY) === '1'
  } catch {
    return false
  }
}

export function saveLowLatency(on: boolean): void {
  try {
    localStorage.setItem(LOW_LATENCY_KEY, on ? '1' : '0')
  } catch {
    // storage unavailable: the choice lasts this page only
  }
}

/** Whether this browser can play over WebRTC at all. */
export function webrtcSupported(): boolean {
  return typeof RTCPeerConnection !== 'undefined'
}

export interface WhepOptions {
  /** At most this long waiting for ICE gathering before sending the offer (ms). */
  gatherTimeout?: number
  /** The connection must reach 'connected' within this long of start() (ms). */
  connectTimeout?: number
  /** Called once per failed session, with the server's message (null: no message to show). */
  onFailed?: (message: string | null) => void
}

/** The server's message from a JSON error body ``{"error": {"code", "message"}}``, if any. */
async function errorMessage(response: Response): Promise<string | null> {
  try {
    const body: unknown = await response.json()
    const message = (body as { error?: { message?: unknown } } | null)?.error?.message
    return typeof message === 'string' && message.trim() ? message : null
  } catch {
    return null
  }
}

class WhepFailure extends Error {
  constructor(readonly serverMessage: string | null) {
    super(serverMessage ?? 'WHEP failed')
  }
}

/** Resolves once ICE gathering is complete (the offer then carries every candidate), or after
 * ``timeout`` ms with what was gathered by then. */
function iceGathered(pc: RTCPeerConnection, timeout: number): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve()
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer)
      pc.removeEventListener('icegatheringstatechange', check)
      resolve()
    }
    const check = (): void => {
      if (pc.iceGatheringState === 'complete') done()
    }
    const timer = setTimeout(done, timeout)
    pc.addEventListener('icegatheringstatechange', check)
  })
}

export function useWhep(options: WhepOptions = {}) {
  const gatherTimeout = options.gatherTimeout ?? 2000
  const connectTimeout = options.connectTimeout ?? 10_000
  const state = ref<WhepState>('idle')
  const stream = shallowRef<MediaStream | null>(null)
  /** The last failure's server message; null with state 'failed': show a generic line. */
  const error = ref<string | null>(null)
  /** The session's resource (absolute), once the server made it. */
  const resource = ref<string | null>(null)
  let pc: RTCPeerConnection | null = null
  let timer: ReturnType<typeof setTimeout> | null = null
  let generation = 0 // a start() or stop() since makes an older start's late results moot

  function endSession(url: string | null): void {
    if (!url) return
    // keepalive: the DELETE still goes out when the page is being left.
    fetch(url, { method: 'DELETE', credentials: 'same-origin', keepalive: true }).catch(() => {})
  }

  function teardown(): void {
    generation += 1
    if (timer) clearTimeout(timer)
    timer = null
    endSession(resource.value)
    resource.value = null
    if (pc) {
      pc.ontrack = null
      pc.onconnectionstatechange = null
      pc.close()
      pc = null
    }
    stream.value = null
  }

  function fail(mine: number, message: string | null): void {
    if (mine !== generation) return
    teardown()
    state.value = 'failed'
    error.value = message
    options.onFailed?.(message)
  }

  /** Ends the session (DELETE, close): the player went away or switched to HLS. */
  function stop(): void {
    teardown()
    state.value = 'idle'
  }

  /** Starts (or restarts) playing ``url``; true once the server answered the offer. */
  async function start(url: string): Promise<boolean> {
    teardown()
    const mine = generation
    state.value = 'connecting'
    error.value = null
    timer = setTimeout(() => fail(mine, null), connectTimeout)
    try {
      const peer = new RTCPeerConnection()
      pc = peer
      peer.addTransceiver('video', { direction: 'recvonly' })
      peer.addTransceiver('audio', { direction: 'recvonly' })
      peer.ontrack = (event) => {
        if (mine !== generation) return
        const [first] = event.streams
        if (first) {
          stream.value = first
        } else if (stream.value) {
          stream.value.addTrack(event.track)
          triggerRef(stream)
        } else {
          stream.value = new MediaStream([event.track])
        }
      }
      peer.onconnectionstatechange = () => {
        if (mine !== generation) return
        if (peer.connectionState === 'connected') {
          state.value = 'connected'
          if (timer) clearTimeout(timer)
          timer = null
        } else if (peer.connectionState === 'failed' || peer.connectionState === 'closed') {
          fail(mine, null)
        }
      }
      await peer.setLocalDescription(await peer.createOffer())
      await iceGathered(peer, gatherTimeout)
      if (mine !== generation) return false
      const response = await fetch(url, {
        method: 'POST',
        body: peer.localDescription?.sdp ?? '',
        headers: { 'Content-Type': 'application/sdp' },
        credentials: 'same-origin',
      })
      const location = response.headers.get('Location')
      const made = response.status === 201 && location ? new URL(location, url).href : null
      if (mine !== generation) {
        endSession(made) // stopped while the server was answering
        return false
      }
      if (response.status !== 201) throw new WhepFailure(await errorMessage(response))
      resource.value = made
      const sdp = await response.text()
      if (mine !== generation) return false
      await peer.setRemoteDescription({ type: 'answer', sdp })
      return mine === generation
    } catch (exc) {
      fail(mine, exc instanceof WhepFailure ? exc.serverMessage : null)
      return false
    }
  }

  if (getCurrentScope()) onScopeDispose(stop)
  return { state, stream, error, resource, start, stop }
}
