// One upload from the upload page: create it, send its parts (pause, resume, retry), complete it,
// then follow the transcoding until the video is ready or failed. The page shows the state; the
// parts and the progress stream are parts.ts's and sse.ts's.
import { onBeforeUnmount, ref, shallowRef } from 'vue'
import { api } from '@/api/client'
import type { Upload, Video, VideoProgress, Visibility } from '@/api/types'
import { isAbort, sendParts, xhrPut, type PutPart } from './parts'
import { RateMeter } from './rate'
import { forget, remember } from './saved'
import { followProgress } from './sse'

export type UploadPhase =
  | 'idle' // nothing yet
  | 'starting' // creating or re-reading the upload
  | 'uploading'
  | 'paused'
  | 'error' // the upload stopped on an error: resume tries again
  | 'completing'
  | 'processing' // transcoding, progress from the event stream
  | 'ready'
  | 'failed' // the video could not be made (progress.error_message says why)

export interface UploadMeta {
  title: string
  description: string
  visibility: Visibility
}

const TYPES: Record<string, string> = {
  mp4: 'video/mp4', m4v: 'video/mp4', mov: 'video/quicktime', mkv: 'video/x-matroska', webm: 'video/webm',
  flv: 'video/x-flv', ts: 'video/mp2t', avi: 'video/x-msvideo',
}

/** The browser's type, else one from the extension (browsers leave .mkv and .flv blank). */
export function contentType(file: Pick<File, 'name' | 'type'>): string {
  if (file.type) return file.type
  const ext = /\.([a-z0-9]+)$/i.exec(file.name)?.[1]?.toLowerCase() ?? ''
  return TYPES[ext] ?? 'application/octet-stream'
}

export interface UploadDeps {
  put?: PutPart
  now?: () => number
}

export function useUpload(deps: UploadDeps = {}) {
  const put = deps.put ?? xhrPut
  const now = deps.now ?? (() => performance.now())
  const phase = ref<UploadPhase>('idle')
  const upload = shallowRef<Upload | null>(null)
  const file = shallowRef<File | null>(null)
  const sent = ref(0)
  const total = ref(0)
  const speed = ref<number | null>(null) // bytes/s
  const eta = ref<number | null>(null) // s
  const error = shallowRef<unknown>(null)
  const progress = shallowRef<VideoProgress | null>(null)
  const videoId = ref<number | null>(null)
  const meter = new RateMeter()
  let sending: AbortController | null = null
  let following: AbortController | null = null
  let ticker: ReturnType<typeof setInterval> | null = null

  function tick(): void {
    speed.value = meter.sample(now(), sent.value)
    eta.value = meter.eta(total.value - sent.value)
  }
  function startTicker(): void {
    meter.reset()
    meter.sample(now(), sent.value)
    speed.value = null
    eta.value = null
    ticker ??= setInterval(tick, 500)
  }
  function stopTicker(): void {
    if (ticker) clearInterval(ticker)
    ticker = null
    eta.value = null
  }

  async function start(chosen: File, meta: UploadMeta): Promise<void> {
    phase.value = 'starting'
    error.value = null
    try {
      const created = await api<Upload>('/api/videos/uploads', {
        method: 'POST',
        body: {
          filename: chosen.name, size: chosen.size, content_type: contentType(chosen),
          title: meta.title, description: meta.description || undefined, visibility: meta.visibility,
        },
      })
      remember({
        upload_id: created.upload_id, video_id: created.video_id, filename: chosen.name,
        size: chosen.size, lastModified: chosen.lastModified, title: meta.title,
      })
      await run(created, chosen)
    } catch (exc) {
      error.value = exc
      phase.value = upload.value ? 'error' : 'idle'
    }
  }

  /** Resume `id` with the file the user selected again (the page checked it is the same). */
  async function resumeWith(id: string, chosen: File): Promise<void> {
    file.value = chosen
    upload.value = { upload_id: id } as Upload
    await resume()
  }

  async function resume(): Promise<void> {
    const current = upload.value
    const chosen = file.value
    if (!current || !chosen) return
    phase.value = 'starting'
    error.value = null
    try {
      const fresh = await api<Upload>(`/api/videos/uploads/${encodeURIComponent(current.upload_id)}`)
      if (fresh.status === 'completed') {
        upload.value = fresh
        forget(fresh.upload_id)
        await follow(fresh.video_id)
        return
      }
      await run(fresh, chosen)
    } catch (exc) {
      error.value = exc
      phase.value = 'error'
    }
  }

  async function run(target: Upload, chosen: File): Promise<void> {
    upload.value = target
    file.value = chosen
    videoId.value = target.video_id
    total.value = chosen.size
    sent.value = target.received.reduce((sum, r) => sum + r.size, 0)
    const controller = new AbortController()
    sending = controller
    phase.value = 'uploading'
    startTicker()
    try {
      await sendParts({
        file: chosen, size: chosen.size, partSize: target.part_size, parts: target.parts,
        received: target.received, put, signal: controller.signal,
        onProgress: (bytes) => (sent.value = bytes),
        refreshUrls: async () => (await api<Upload>(`/api/videos/uploads/${encodeURIComponent(target.upload_id)}`)).parts,
      })
    } catch (exc) {
      if (isAbort(exc)) return // paused or cancelled: they set the phase
      throw exc
    } finally {
      stopTicker()
      if (sending === controller) sending = null
    }
    if (controller.signal.aborted) return
    phase.value = 'completing'
    const video = await api<Video>(`/api/videos/uploads/${encodeURIComponent(target.upload_id)}/complete`, { method: 'POST', body: {} })
    forget(target.upload_id)
    await follow(video.id, video)
  }

  async function follow(id: number, video?: Video): Promise<void> {
    videoId.value = id
    phase.value = 'processing'
    if (video) {
      progress.value = {
        status: video.status, percent: video.processing_progress, stage: video.processing_stage,
        eta_seconds: video.eta_seconds, error_message: video.error_message,
      }
    }
    following?.abort()
    const controller = new AbortController()
    following = controller
    try {
      const last = await followProgress(id, (p) => (progress.value = p), { signal: controller.signal })
      phase.value = last.status === 'ready' ? 'ready' : 'failed'
    } catch (exc) {
      if (isAbort(exc)) return
      throw exc
    }
  }

  function pause(): void {
    if (phase.value !== 'uploading') return
    phase.value = 'paused'
    sending?.abort()
    // Parts cut off may have been stored all the same: show what the server holds.
    const id = upload.value?.upload_id
    if (id) {
      void api<Upload>(`/api/videos/uploads/${encodeURIComponent(id)}`).then((fresh) => {
        if (phase.value === 'paused' && upload.value?.upload_id === id) {
          sent.value = fresh.received.reduce((sum, r) => sum + r.size, 0)
        }
      }, () => {})
    }
  }

  async function cancel(): Promise<void> {
    const current = upload.value
    sending?.abort()
    following?.abort()
    if (current?.upload_id) {
      forget(current.upload_id)
      try {
        await api(`/api/videos/uploads/${encodeURIComponent(current.upload_id)}`, { method: 'DELETE' })
      } catch {
        // already gone or expired: nothing to free
      }
    }
    reset()
  }

  function reset(): void {
    sending?.abort()
    following?.abort()
    stopTicker()
    phase.value = 'idle'
    upload.value = null
    file.value = null
    sent.value = 0
    total.value = 0
    speed.value = null
    error.value = null
    progress.value = null
    videoId.value = null
  }

  onBeforeUnmount(() => {
    sending?.abort()
    following?.abort()
    stopTicker()
  })

  return {
    phase, upload, file, sent, total, speed, eta, error, progress, videoId,
    start, resume, resumeWith, pause, cancel, reset,
  }
}

export type UploadState = ReturnType<typeof useUpload>
