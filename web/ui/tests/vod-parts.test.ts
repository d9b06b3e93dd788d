// The upload's part scheduler and speed meter, with a scripted PUT and no clock.
import { describe, expect, it } from 'vitest'
import {
  backoffMs, isAbort, partRange, pendingParts, PutError, retriable, sendParts, type PutPart, type Sleep,
} from '@/composables/vod/parts'
import { formatBytes, RateMeter } from '@/composables/vod/rate'

const bytes = (n: number) => new Blob([new Uint8Array(n).map((_, i) => i % 251)])
const urls = (count: number) => Array.from({ length: count }, (_, i) => ({ number: i + 1, url: `https://s3/p${i + 1}` }))
const noSleep: Sleep = async () => {}

interface Call { url: string; size: number; first: number }
async function firstByte(blob: Blob): Promise<number> {
  return new Uint8Array(await blob.arrayBuffer())[0]
}

describe('part ranges', () => {
  it('cuts the file into part_size pieces, the last one short', () => {
    expect(partRange(1, 10, 25)).toEqual([0, 10])
    expect(partRange(3, 10, 25)).toEqual([20, 25])
  })

  it('skips parts the server holds, resends one it holds with the wrong length', () => {
    expect(pendingParts(25, 10, [])).toEqual([1, 2, 3])
    expect(pendingParts(25, 10, [{ number: 2, size: 10 }, { number: 3, size: 5 }])).toEqual([1])
    expect(pendingParts(25, 10, [{ number: 1, size: 4 }, { number: 9, size: 10 }])).toEqual([1, 2, 3])
    expect(pendingParts(0, 10, [])).toEqual([1])
  })
})

describe('sendParts', () => {
  it('sends each missing part once with its own bytes, at most 4 at a time', async () => {
    const calls: Call[] = []
    let active = 0
    let peak = 0
    const put: PutPart = async (url, body, onProgress) => {
      active += 1
      peak = Math.max(peak, active)
      calls.push({ url, size: body.size, first: await firstByte(body) })
      await new Promise((r) => setTimeout(r, 1))
      onProgress(body.size)
      active -= 1
    }
    const progress: number[] = []
    await sendParts({
      file: bytes(95), size: 95, partSize: 10, parts: urls(10), received: [{ number: 4, size: 10 }],
      put, signal: new AbortController().signal, onProgress: (s) => progress.push(s),
    })
    expect(calls.map((c) => c.url).sort()).toEqual(urls(10).filter((p) => p.number !== 4).map((p) => p.url).sort())
    expect(calls.find((c) => c.url.endsWith('p10'))).toMatchObject({ size: 5, first: 90 })
    expect(calls.find((c) => c.url.endsWith('p2'))).toMatchObject({ size: 10, first: 10 })
    expect(peak).toBe(4)
    expect(progress[0]).toBe(10) // the part already held
    expect(progress.at(-1)).toBe(95)
  })

  it('retries network errors and 5xx with growing delays, then succeeds', async () => {
    const failures = new Map([[2, [0, 503, 500]]])
    const waits: number[] = []
    const put: PutPart = async (url) => {
      const n = Number(url.slice(-1))
      const left = failures.get(n)
      if (left?.length) throw new PutError(left.shift()!)
    }
    await sendParts({
      file: bytes(30), size: 30, partSize: 10, parts: urls(3), received: [], put,
      signal: new AbortController().signal, sleep: async (ms) => void waits.push(ms), random: () => 1,
    })
    expect(waits).toEqual([500, 1000, 2000])
  })

  it('gives up on a 4xx at once and on a 5xx after maxAttempts, stopping the other parts', async () => {
    const put: PutPart = async (url, _body, _p, signal) => {
      if (url.endsWith('p1')) throw new PutError(400)
      await new Promise((resolve, reject) => {
        const t = setTimeout(resolve, 50)
        signal.addEventListener('abort', () => { clearTimeout(t); reject(new DOMException('x', 'AbortError')) })
      })
    }
    const error = await sendParts({
      file: bytes(40), size: 40, partSize: 10, parts: urls(4), received: [], put, signal: new AbortController().signal,
    }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(PutError)
    expect((error as PutError).status).toBe(400)

    let tries = 0
    const flaky: PutPart = async () => { tries += 1; throw new PutError(502) }
    const again = await sendParts({
      file: bytes(10), size: 10, partSize: 10, parts: urls(1), received: [], put: flaky,
      signal: new AbortController().signal, sleep: noSleep, maxAttempts: 3,
    }).catch((e: unknown) => e)
    expect((again as PutError).status).toBe(502)
    expect(tries).toBe(3)
  })

  it('a 403 asks for fresh URLs once (an expired signature) and goes on', async () => {
    let refreshed = 0
    const put: PutPart = async (url) => {
      if (!url.includes('fresh')) throw new PutError(403)
    }
    await sendParts({
      file: bytes(30), size: 30, partSize: 10, parts: urls(3), received: [], put,
      signal: new AbortController().signal, sleep: noSleep,
      refreshUrls: async () => {
        refreshed += 1
        return urls(3).map((p) => ({ ...p, url: p.url + '?fresh' }))
      },
    })
    expect(refreshed).toBe(1)
  })

  it('pause aborts the parts in flight; resume sends only what was not received', async () => {
    const controller = new AbortController()
    const done: number[] = []
    const aborted: string[] = []
    const slow: PutPart = (url, _body, onProgress, signal) => new Promise((resolve, reject) => {
      const n = Number(url.split('p').at(-1))
      onProgress(5)
      if (n <= 2) {
        done.push(n)
        return resolve()
      }
      signal.addEventListener('abort', () => {
        aborted.push(url)
        reject(new DOMException('paused', 'AbortError'))
      })
      if (n === 4) setTimeout(() => controller.abort(), 1)
    })
    const progress: number[] = []
    const paused = await sendParts({
      file: bytes(60), size: 60, partSize: 10, parts: urls(6), received: [], put: slow,
      signal: controller.signal, concurrency: 2, onProgress: (s) => progress.push(s),
    }).catch((e: unknown) => e)
    expect(isAbort(paused)).toBe(true)
    expect(done).toEqual([1, 2])
    expect(aborted.sort()).toEqual(['https://s3/p3', 'https://s3/p4'])
    expect(progress.at(-1)).toBe(20) // parts in flight no longer count

    // The server's answer to GET …/uploads/{id}: parts 1 and 2 stored.
    const sentAfter: number[] = []
    await sendParts({
      file: bytes(60), size: 60, partSize: 10, parts: urls(6),
      received: [{ number: 1, size: 10 }, { number: 2, size: 10 }],
      put: async (url) => void sentAfter.push(Number(url.split('p').at(-1))),
      signal: new AbortController().signal,
    })
    expect(sentAfter.sort()).toEqual([3, 4, 5, 6])
  })

  it('an already aborted signal sends nothing', async () => {
    const controller = new AbortController()
    controller.abort()
    let calls = 0
    const error = await sendParts({
      file: bytes(10), size: 10, partSize: 10, parts: urls(1), received: [],
      put: async () => void (calls += 1), signal: controller.signal,
    }).catch((e: unknown) => e)
    expect(isAbort(error)).toBe(true)
    expect(calls).toBe(0)
  })
})

describe('retry policy', () => {
  it('retries what another try can cure', () => {
    expect([0, 408, 429, 500, 503].every(retriable)).toBe(true)
    expect([400, 403, 404, 413].some(retriable)).toBe(false)
  })
  it('backs off exponentially with jitter, capped at 30 s', () => {
    expect(backoffMs(1, () => 1)).toBe(500)
    expect(backoffMs(4, () => 1)).toBe(4000)
    expect(backoffMs(4, () => 0)).toBe(2000)
    expect(backoffMs(20, () => 1)).toBe(30_000)
  })
})

describe('RateMeter', () => {
  it('settles on a steady rate and estimates the time left', () => {
    const m = new RateMeter(2000)
    expect(m.sample(0, 0)).toBeNull()
    for (let t = 1; t <= 20; t++) m.sample(t * 1000, t * 5_000_000)
    expect(m.rate).toBeCloseTo(5_000_000, -3)
    expect(m.eta(10_000_000)).toBeCloseTo(2, 1)
    expect(m.eta(0)).toBe(0)
  })

  it('smooths a burst and ignores samples too close together', () => {
    const m = new RateMeter(4000)
    m.sample(0, 0)
    m.sample(1000, 1_000_000)
    m.sample(1010, 50_000_000) // 10 ms later: skipped
    expect(m.rate).toBe(1_000_000)
    m.sample(2000, 11_000_000) // 10 MB/s for one second: a quarter of the way there (2^-1/4)
    expect(m.rate!).toBeGreaterThan(1_000_000)
    expect(m.rate!).toBeLessThan(4_000_000)
  })

  it('a stall lowers the rate (no ETA at zero) and reset forgets the paused time', () => {
    const m = new RateMeter(1000)
    m.sample(0, 0)
    m.sample(1000, 1000)
    for (let t = 2; t < 40; t++) m.sample(t * 1000, 1000)
    expect(m.eta(5000)).toBeNull()
    m.reset()
    expect(m.rate).toBeNull()
    m.sample(100_000, 1000)
    m.sample(101_000, 3000)
    expect(m.rate).toBe(2000)
  })

  it('formats sizes in decimal units', () => {
    expect(formatBytes(512)).toBe('512 B')
    expect(formatBytes(1_500_000)).toBe('1.5 MB')
    expect(formatBytes(250_000_000)).toBe('250 MB')
  })
})
