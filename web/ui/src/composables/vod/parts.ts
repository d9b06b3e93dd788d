// Sends a file's parts to their signed URLs, S3-multipart style: only the parts the server does
// not hold yet, at most `concurrency` at a time, each retried with backoff on a network error or
// a 5xx. The network is a function passed in (`put`), and so is the wait between tries, so the
// tests run the scheduler without sockets or clocks.

export interface PartTarget {
  number: number
  url: string
}

/** A part's PUT failed; status 0: no HTTP answer (network down, connection reset, CORS). */
export class PutError extends Error {
  constructor(readonly status: number, message = `part upload failed: HTTP ${status}`) {
    super(message)
  }
}

/** `put` reports bytes sent so far with onProgress and resolves on a 2xx. */
export type PutPart = (
  url: string,
  body: Blob,
  onProgress: (loaded: number) => void,
  signal: AbortSignal,
) => Promise<void>

export type Sleep = (ms: number, signal: AbortSignal) => Promise<void>

/** Byte range [start, end) of part `number` (1-based). */
export function partRange(number: number, partSize: number, size: number): [number, number] {
  const start = (number - 1) * partSize
  return [start, Math.min(size, start + partSize)]
}

export function partCount(partSize: number, size: number): number {
  return Math.max(1, Math.ceil(size / partSize))
}

/** The parts still to send, in order: a part the server holds with the wrong length (a PUT cut
 * short) is sent again. */
export function pendingParts(
  size: number,
  partSize: number,
  received: Iterable<{ number: number; size: number }>,
): number[] {
  const count = partCount(partSize, size)
  const held = new Set<number>()
  for (const r of received) {
    const [start, end] = partRange(r.number, partSize, size)
    if (r.number >= 1 && r.number <= count && r.size === end - start) held.add(r.number)
  }
  const out: number[] = []
  for (let n = 1; n <= count; n++) if (!held.has(n)) out.push(n)
  return out
}

/** Worth another try: no answer, a timeout, throttling, or the server's own failure. A 4xx
 * other than those will fail the same way again. */
export function retriable(status: number): boolean {
  return status === 0 || status === 408 || status === 429 || status >= 500
}

/** Exponential (0.5 s, 1 s, 2 s … 30 s) with jitter, so four parts that failed together do not
 * come back together. `attempt` counts from 1. */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(30_000, 500 * 2 ** Math.max(0, attempt - 1))
  return Math.round(base * (0.5 + random() / 2))
}

export function abortError(): DOMException {
  return new DOMException('The upload was paused', 'AbortError')
}

export function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === 'AbortError'
}

export const sleep: Sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortError())
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(abortError())
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })

export interface SendOptions {
  file: Blob
  size: number
  partSize: number
  parts: PartTarget[]
  received: { number: number; size: number }[]
  put: PutPart
  /** Aborting it pauses: parts in flight are dropped (resume sends them again). */
  signal: AbortSignal
  concurrency?: number
  maxAttempts?: number
  /** Bytes the server holds plus those of parts in flight. */
  onProgress?: (sent: number) => void
  onPart?: (number: number) => void
  /** Fresh URLs when one was refused with 403 (a signed URL expired during a long upload). */
  refreshUrls?: () => Promise<PartTarget[]>
  sleep?: Sleep
  random?: () => number
}

/** Sends every missing part; resolves when all are stored, rejects with the first error that
 * retrying did not cure (after every other part in flight has stopped), or an AbortError. */
export async function sendParts(options: SendOptions): Promise<void> {
  const { file, size, partSize, put, signal } = options
  const concurrency = Math.max(1, options.concurrency ?? 4)
  const maxAttempts = options.maxAttempts ?? 8
  const wait = options.sleep ?? sleep
  const urls = new Map(options.parts.map((p) => [p.number, p.url]))
  const queue = pendingParts(size, partSize, options.received)
  const held = new Set(partNumbers(options.received, size, partSize))
  let confirmed = 0
  for (const n of held) confirmed += partLength(n, partSize, size)
  const inFlight = new Map<number, number>()
  // One stop for every worker: the caller's pause, or the first part that cannot be sent.
  const stop = new AbortController()
  const onOuterAbort = (): void => stop.abort()
  if (signal.aborted) throw abortError()
  signal.addEventListener('abort', onOuterAbort, { once: true })
  let refreshing: Promise<void> | null = null
  let urlGeneration = 0

  const report = (): void => {
    let sent = confirmed
    for (const loaded of inFlight.values()) sent += loaded
    options.onProgress?.(sent)
  }

  async function refresh(seen: number): Promise<boolean> {
    if (!options.refreshUrls) return false
    if (seen === urlGeneration) {
      refreshing ??= options.refreshUrls().then((fresh) => {
        for (const p of fresh) urls.set(p.number, p.url)
        urlGeneration += 1
        refreshing = null
      }, (error: unknown) => {
        refreshing = null
        throw error
      })
    }
    await refreshing
    return true
  }

  async function sendOne(n: number): Promise<void> {
    const [start, end] = partRange(n, partSize, size)
    let refreshed = false
    for (let attempt = 1; ; attempt++) {
      if (stop.signal.aborted) throw abortError()
      const url = urls.get(n)
      if (!url) throw new PutError(0, `no URL for part ${n}`)
      const generation = urlGeneration
      inFlight.set(n, 0)
      try {
        await put(url, file.slice(start, end), (loaded) => {
          inFlight.set(n, Math.min(loaded, end - start))
          report()
        }, stop.signal)
        inFlight.delete(n)
        confirmed += end - start
        report()
        options.onPart?.(n)
        return
      } catch (error) {
        inFlight.delete(n)
        report()
        if (stop.signal.aborted) throw abortError()
        const status = error instanceof PutError ? error.status : 0
        if (status === 403 && !refreshed && await refresh(generation)) {
          refreshed = true
          attempt -= 1 // a new URL, not a failed try
          continue
        }
        if (!retriable(status) || attempt >= maxAttempts) throw error
        await wait(backoffMs(attempt, options.random), stop.signal)
      }
    }
  }

  let failure: unknown = null
  async function worker(): Promise<void> {
    while (queue.length && !stop.signal.aborted) {
      const n = queue.shift()!
      try {
        await sendOne(n)
      } catch (error) {
        if (failure === null) failure = error
        stop.abort()
        return
      }
    }
  }

  try {
    report()
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker))
  } finally {
    signal.removeEventListener('abort', onOuterAbort)
  }
  if (signal.aborted) throw abortError()
  if (failure !== null) throw failure
}

function partLength(n: number, partSize: number, size: number): number {
  const [start, end] = partRange(n, partSize, size)
  return end - start
}

function partNumbers(received: { number: number; size: number }[], size: number, partSize: number): number[] {
  const missing = new Set(pendingParts(size, partSize, received))
  const out: number[] = []
  for (let n = 1; n <= partCount(partSize, size); n++) if (!missing.has(n)) out.push(n)
  return out
}

/** The browser's PUT: XMLHttpRequest, for upload progress (fetch has none). No credentials and
 * no Authorization header: the URL is signed, and may be another origin (an S3 bucket). */
export const xhrPut: PutPart = (url, body, onProgress, signal) =>
  new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('PUT', url)
    xhr.upload.onprogress = (event) => onProgress(event.loaded)
    xhr.onload = () => (xhr.status >= 200 && xhr.status < 300 ? resolve() : reject(new PutError(xhr.status)))
    xhr.onerror = () => reject(new PutError(0, 'network error'))
    xhr.ontimeout = () => reject(new PutError(0, 'timed out'))
    xhr.onabort = () => reject(abortError())
    signal.addEventListener('abort', () => xhr.abort(), { once: true })
    if (signal.aborted) return reject(abortError())
    xhr.send(body)
  })
