// The upload page's controller end to end against a scripted API: create, parts, pause, resume
// (only the missing parts), complete, then the progress stream until ready.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createApp, h } from 'vue'
import { setSession } from '@/api/client'
import { contentType, useUpload } from '@/composables/vod/useUpload'
import type { PutPart } from '@/composables/vod/parts'
import { loadSaved } from '@/composables/vod/saved'

function json(status: number, body: unknown): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

function mounted<T>(make: () => T): { value: T; unmount: () => void } {
  let value!: T
  const app = createApp({ setup() { value = make(); return () => h('div') } })
  app.mount(document.createElement('div'))
  return { value, unmount: () => app.unmount() }
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5))
  expect(check()).toBe(true)
}

afterEach(() => {
  vi.unstubAllGlobals()
  setSession(null)
  localStorage.clear()
})

describe('useUpload', () => {
  it('uploads, pauses, resumes the missing parts only, completes and follows to ready', async () => {
    setSession('tok', 900)
    const stored = new Map<number, number>()
    const parts = [1, 2, 3, 4, 5].map((number) => ({ number, url: `https://bucket/p${number}` }))
    const upload = () => ({
      upload_id: 'u1', video_id: 9, filename: 'a.mkv', size: 50, part_size: 10, part_count: 5, parts,
      received: [...stored].map(([number, size]) => ({ number, size })), expires_at: '', status: 'uploading',
    })
    const requests: string[] = []
    let created: Record<string, unknown> = {}
    vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit) => {
      requests.push(`${init.method ?? 'GET'} ${url}`)
      if (url === '/api/videos/uploads' && init.method === 'POST') {
        created = JSON.parse(String(init.body))
        return json(201, upload())
      }
      if (url === '/api/videos/uploads/u1') return json(200, upload())
      if (url === '/api/videos/uploads/u1/complete') return json(202, { id: 9, status: 'processing', processing_progress: 0 })
      if (url === '/api/videos/9/events') {
        return new Response('event: progress\ndata: {"status":"processing","percent":40}\n\nevent: progress\ndata: {"status":"ready","percent":100}\n\n')
      }
      return json(404, { error: { code: 'not_found', message: url } })
    }))

    let hold = true // parts 3 to 5 stay in flight until the user pauses
    const puts: number[] = []
    const put: PutPart = (url, body, onProgress, signal) => new Promise((resolve, reject) => {
      const n = Number(url.slice(-1))
      puts.push(n)
      signal.addEventListener('abort', () => reject(new DOMException('paused', 'AbortError')))
      if (hold && n > 2) return
      onProgress(body.size)
      stored.set(n, body.size)
      resolve()
    })
    const { value: up, unmount } = mounted(() => useUpload({ put }))
    const file = new File([new Uint8Array(50)], 'a.mkv', { lastModified: 7 })
    const started = up.start(file, { title: 'A', description: '', visibility: 'unlisted' })
    await until(() => stored.size === 2)
    expect(created).toMatchObject({ filename: 'a.mkv', size: 50, content_type: 'video/x-matroska', title: 'A', visibility: 'unlisted' })
    expect(loadSaved()[0]).toMatchObject({ upload_id: 'u1', lastModified: 7 })
    up.pause()
    await started
    expect(up.phase.value).toBe('paused')
    expect(up.sent.value).toBe(20)

    hold = false
    puts.length = 0
    await up.resume()
    expect(puts.sort()).toEqual([3, 4, 5])
    expect(up.phase.value).toBe('ready')
    expect([...stored.keys()].sort()).toEqual([1, 2, 3, 4, 5])
    expect(up.progress.value).toMatchObject({ status: 'ready', percent: 100 })
    expect(requests).toContain('POST /api/videos/uploads/u1/complete')
    expect(loadSaved()).toEqual([]) // completed: nothing left to resume
    unmount()
  })

  it('guesses the content type the browser left blank', () => {
    expect(contentType({ name: 'x.MOV', type: '' })).toBe('video/quicktime')
    expect(contentType({ name: 'x.bin', type: '' })).toBe('application/octet-stream')
    expect(contentType({ name: 'x.mkv', type: 'video/webm' })).toBe('video/webm')
  })
})
