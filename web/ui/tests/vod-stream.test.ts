// The progress stream's SSE parser and follower, the storyboard track's parser, the upload
// page's memory of unfinished uploads.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { followProgress, readEvents, SseParser, type SseEvent } from '@/composables/vod/sse'
import { cueAt, parseStoryboard, parseTimestamp } from '@/composables/vod/storyboard'
import { forget, loadSaved, remember, resumables, sameFile } from '@/composables/vod/saved'
import { setSession } from '@/api/client'
import type { Upload } from '@/api/types'

const STREAM =
  '\uFEFF: keep-alive\r\n' +
  'event: progress\r\ndata: {"status":"processing","percent":10}\r\n\r\n' +
  'event: progress\ndata: {"status":"processing",\ndata: "percent":50}\nid: 7\n\n' +
  'retry: 3000\n' +
  'data: plain\rdata:no-space\r\r' +
  'event: progress\ndata: {"status":"ready","percent":100}\n\n'

function feedAll(parser: SseParser, parts: string[]): SseEvent[] {
  return parts.flatMap((p) => parser.feed(p))
}

describe('SseParser', () => {
  const whole = feedAll(new SseParser(), [STREAM])

  it('reads events, multi-line data, ids, comments, retry and every line ending', () => {
    expect(whole).toEqual([
      { event: 'progress', data: '{"status":"processing","percent":10}', id: null },
      { event: 'progress', data: '{"status":"processing",\n"percent":50}', id: '7' },
      { event: 'message', data: 'plain\nno-space', id: '7' },
      { event: 'progress', data: '{"status":"ready","percent":100}', id: '7' },
    ])
  })

  it('gives the same events however the text is cut (every split point, and char by char)', () => {
    for (let cut = 0; cut <= STREAM.length; cut++) {
      const parser = new SseParser()
      expect(feedAll(parser, [STREAM.slice(0, cut), STREAM.slice(cut)]), `cut at ${cut}`).toEqual(whole)
    }
    const parser = new SseParser()
    expect(feedAll(parser, [...STREAM])).toEqual(whole)
    expect(parser.retry).toBe(3000)
  })

  it('keeps an unfinished event until its blank line', () => {
    const parser = new SseParser()
    expect(parser.feed('data: a\n')).toEqual([])
    expect(parser.feed('\n')).toEqual([{ event: 'message', data: 'a', id: null }])
    expect(parser.feed('event: x\n\n')).toEqual([]) // no data: no event
  })

  it('decodes UTF-8 cut inside a character', async () => {
    const bytes = new TextEncoder().encode('data: 直播\n\n')
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (const b of bytes) c.enqueue(new Uint8Array([b]))
        c.close()
      },
    })
    const events: SseEvent[] = []
    await readEvents(new Response(body), (e) => events.push(e))
    expect(events).toEqual([{ event: 'message', data: '直播', id: null }])
  })
})

describe('followProgress', () => {
  afterEach(() => setSession(null))
  const sse = (...events: object[]) =>
    new Response(events.map((e) => `event: progress\ndata: ${JSON.stringify(e)}\n\n`).join(''), {
      headers: { 'Content-Type': 'text/event-stream' },
    })

  it('sends the bearer token, reconnects after a drop, ends on a terminal status', async () => {
    setSession('tok', 900)
    const answers = [
      () => sse({ status: 'processing', percent: 20 }), // then the stream drops
      () => { throw new TypeError('network') },
      () => sse({ status: 'processing', percent: 60 }, { status: 'failed', percent: 60, error_message: 'No video stream.' }),
    ]
    const seen: RequestInit[] = []
    const fetchFake = vi.fn(async (_url: RequestInfo | URL, init?: RequestInit) => {
      seen.push(init!)
      return answers.shift()!()
    })
    const percents: number[] = []
    let drops = 0
    const last = await followProgress(5, (p) => percents.push(p.percent), {
      signal: new AbortController().signal, fetch: fetchFake, sleep: async () => {}, onDrop: () => (drops += 1),
    })
    expect(last).toMatchObject({ status: 'failed', error_message: 'No video stream.' })
    expect(percents).toEqual([20, 60, 60])
    expect(drops).toBe(2)
    expect(fetchFake.mock.calls[0][0]).toBe('/api/videos/5/events')
    expect((seen[0].headers as Record<string, string>).Authorization).toBe('Bearer tok')
  })

  it('stops on a 403 or 404 instead of retrying', async () => {
    const fetchFake = vi.fn(async () => new Response(JSON.stringify({ error: { code: 'forbidden', message: 'no' } }), { status: 403 }))
    await expect(followProgress(5, () => {}, { signal: new AbortController().signal, fetch: fetchFake, sleep: async () => {} }))
      .rejects.toMatchObject({ status: 403 })
    expect(fetchFake).toHaveBeenCalledTimes(1)
  })
})

const VTT = `WEBVTT

00:00:00.000 --> 00:00:05.000
storyboard.jpg#xywh=0,0,160,90

1
00:00:05.000 --> 00:00:10.000 align:start
storyboard.jpg#xywh=160,0,160,90

00:10.000 --> 00:15.000
https://cdn.example/sb.jpg?sig=a%2Fb#xywh=pixel:0,90,160,90

00:00:15.000 --> 00:00:20.000
no-crop.jpg
`

describe('storyboard', () => {
  const cues = parseStoryboard(VTT, 'https://media.example/vod/9/r1/storyboard.vtt?token=x')

  it('parses cues, crops and URLs relative to the track', () => {
    expect(cues).toHaveLength(3)
    expect(cues[0]).toEqual({ start: 0, end: 5, url: 'https://media.example/vod/9/r1/storyboard.jpg', x: 0, y: 0, w: 160, h: 90 })
    expect(cues[1]).toMatchObject({ start: 5, end: 10, x: 160 })
    expect(cues[2]).toMatchObject({ start: 10, url: 'https://cdn.example/sb.jpg?sig=a%2Fb', y: 90 })
  })

  it('finds the cue for a time', () => {
    expect(cueAt(cues, 0)?.x).toBe(0)
    expect(cueAt(cues, 7.5)?.x).toBe(160)
    expect(cueAt(cues, 99)?.y).toBe(90)
    expect(cueAt([], 3)).toBeNull()
  })

  it('reads timestamps with and without hours, and rejects others', () => {
    expect(parseTimestamp('01:02:03.5')).toBe(3723.5)
    expect(parseTimestamp('02:03.250')).toBe(123.25)
    expect(parseTimestamp('abc')).toBeNaN()
    expect(parseStoryboard('WEBVTT\n\nnonsense --> x\nsb.jpg#xywh=0,0,1,1\n', 'https://a/')).toEqual([])
  })
})

describe('saved uploads', () => {
  const upload = (id: string, filename = 'clip.mp4', size = 1000) => ({ upload_id: id, filename, size, received: [] }) as unknown as Upload

  it('remembers, matches the same file by name, size and modification time, forgets', () => {
    localStorage.clear()
    remember({ upload_id: 'u1', video_id: 1, filename: 'clip.mp4', size: 1000, lastModified: 42, title: 'Clip' })
    const [r] = resumables([upload('u1'), upload('u2', 'other.mov')])
    expect(sameFile(r, { name: 'clip.mp4', size: 1000, lastModified: 42 })).toBe(true)
    expect(sameFile(r, { name: 'clip.mp4', size: 1000, lastModified: 43 })).toBe(false)
    expect(sameFile(r, { name: 'clip.mp4', size: 999, lastModified: 42 })).toBe(false)
    // Started in another browser: name and size are all there is to go on.
    const other = resumables([upload('u2', 'other.mov')])[0]
    expect(other.saved).toBeNull()
    expect(sameFile(other, { name: 'other.mov', size: 1000, lastModified: 1 })).toBe(true)
    forget('u1')
    expect(loadSaved()).toEqual([])
  })
})
