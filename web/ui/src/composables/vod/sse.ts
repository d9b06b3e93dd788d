// Server-sent events over fetch(): EventSource cannot send an Authorization header, and the
// progress stream is the owner's only. The parser is the HTML standard's "event stream
// interpretation", fed text as it arrives (a chunk may end anywhere: mid-line, between \r and
// \n); the follower reconnects with backoff when the stream drops before a terminal event.
import { accessToken, readResponse, refresh } from '@/api/client'
import type { VideoProgress } from '@/api/types'
import { abortError, backoffMs, isAbort, sleep as defaultSleep, type Sleep } from './parts'

export interface SseEvent {
  event: string
  data: string
  id: string | null
}

export class SseParser {
  private buffer = ''
  private skipLf = false
  private started = false
  private data: string[] = []
  private type = ''
  private lastId: string | null = null
  /** The server's reconnection delay (`retry:`), in ms. */
  retry: number | null = null

  /** The events completed by this text. */
  feed(text: string): SseEvent[] {
    if (!this.started && text.length) {
      this.started = true
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
    }
    const events: SseEvent[] = []
    let from = 0
    this.buffer += text
    const buf = this.buffer
    for (let i = 0; i < buf.length; i++) {
      const c = buf[i]
      if (this.skipLf) {
        this.skipLf = false
        if (c === '\n') {
          from = i + 1
          continue
        }
      }
      if (c === '\n' || c === '\r') {
        this.line(buf.slice(from, i), events)
        if (c === '\r') this.skipLf = true
        from = i + 1
      }
    }
    this.buffer = buf.slice(from)
    return events
  }

  private line(line: string, events: SseEvent[]): void {
    if (line === '') {
      if (this.data.length) events.push({ event: this.type || 'message', data: this.data.join('\n'), id: this.lastId })
      this.data = []
      this.type = ''
      return
    }
    if (line.startsWith(':')) return // a comment (keep-alive)
    const colon = line.indexOf(':')
    const field = colon < 0 ? line : line.slice(0, colon)
    let value = colon < 0 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'data') this.data.push(value)
    else if (field === 'event') this.type = value
    else if (field === 'id' && !value.includes('\0')) this.lastId = value
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value)
  }
}

/** Reads one response's events until the stream ends. */
export async function readEvents(response: Response, onEvent: (event: SseEvent) => void): Promise<void> {
  if (!response.body) return
  const reader = response.body.getReader()
  const decoder = new TextDecoder() // stream: true below keeps a character cut in two whole
  const parser = new SseParser()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      for (const event of parser.feed(decoder.decode(value, { stream: true }))) onEvent(event)
    }
    for (const event of parser.feed(decoder.decode() + '\n\n')) onEvent(event)
  } finally {
    reader.releaseLock()
  }
}

export interface FollowOptions {
  signal: AbortSignal
  fetch?: typeof fetch
  sleep?: Sleep
  random?: () => number
  /** Called when the stream is lost and a reconnect is waiting. */
  onDrop?: () => void
}

export const TERMINAL = new Set(['ready', 'failed'])

/** Follows a video's processing until it is ready or failed: resolves with the last event.
 * Reconnects after a drop (with backoff; reset once an event arrives); a 4xx other than 401
 * (not the owner, no such video) rejects. */
export async function followProgress(
  videoId: number,
  onProgress: (progress: VideoProgress) => void,
  options: FollowOptions,
): Promise<VideoProgress> {
  const doFetch = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init))
  const wait = options.sleep ?? defaultSleep
  const path = `/api/videos/${videoId}/events`
  let attempts = 0
  let last: VideoProgress | null = null
  const open = (): Promise<Response> => {
    const headers: Record<string, string> = { Accept: 'text/event-stream' }
    const token = accessToken()
    if (token) headers.Authorization = `Bearer ${token}`
    return doFetch(path, { headers, credentials: 'same-origin', signal: options.signal, cache: 'no-store' })
  }
  for (;;) {
    if (options.signal.aborted) throw abortError()
    try {
      let response = await open()
      if (response.status === 401 && (await refresh()) === 'ok') response = await open()
      if (!response.ok) await readResponse(response) // throws the API's error
      await readEvents(response, (event) => {
        if (event.event !== 'progress') return
        try {
          last = JSON.parse(event.data) as VideoProgress
        } catch {
          return
        }
        attempts = 0
        onProgress(last)
      })
      const final = last as VideoProgress | null
      if (final && TERMINAL.has(final.status)) return final
    } catch (error) {
      if (isAbort(error) || options.signal.aborted) throw abortError()
      const status = (error as { status?: number }).status
      if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) throw error
    }
    attempts += 1
    options.onDrop?.()
    await wait(Math.min(15_000, backoffMs(attempts + 1, options.random)), options.signal)
  }
}
