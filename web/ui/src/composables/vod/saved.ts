// What this browser remembers about its unfinished uploads, so that a reload can resume one: the
// server knows the upload and its parts, but only the file's name, size and modification time
// tell that the file the user selects again is the same one (a browser cannot reopen a file
// by itself).
import type { Upload } from '@/api/types'

export interface SavedUpload {
  upload_id: string
  video_id: number
  filename: string
  size: number
  lastModified: number
  title: string
}

const KEY = 'streamd.uploads'
const MAX = 20

export function loadSaved(): SavedUpload[] {
  try {
    const list: unknown = JSON.parse(localStorage.getItem(KEY) ?? '[]')
    return Array.isArray(list) ? list.filter((u) => u && typeof u.upload_id === 'string').slice(0, MAX) : []
  } catch {
    return []
  }
}

function store(list: SavedUpload[]): void {
  try {
    localStorage.setItem(KEY, JSON.stringify(list.slice(0, MAX)))
  } catch {
    // storage full or off: a reload cannot resume, the upload itself goes on
  }
}

export function remember(entry: SavedUpload): void {
  store([entry, ...loadSaved().filter((u) => u.upload_id !== entry.upload_id)])
}

export function forget(uploadId: string): void {
  store(loadSaved().filter((u) => u.upload_id !== uploadId))
}

/** Keep only the entries the server still lists as uploading (the others expired or ended). */
export function prune(open: Upload[]): void {
  const ids = new Set(open.map((u) => u.upload_id))
  store(loadSaved().filter((u) => ids.has(u.upload_id)))
}

export interface Resumable {
  upload: Upload
  saved: SavedUpload | null
}

/** Whether `file` is the one `r` was started with: name and size, and the modification time
 * when this browser saw the original. */
export function sameFile(r: Resumable, file: Pick<File, 'name' | 'size' | 'lastModified'>): boolean {
  if (file.name !== r.upload.filename || file.size !== r.upload.size) return false
  return r.saved === null || r.saved.lastModified === file.lastModified
}

export function resumables(open: Upload[], saved: SavedUpload[] = loadSaved()): Resumable[] {
  const byId = new Map(saved.map((s) => [s.upload_id, s]))
  return open.map((upload) => ({ upload, saved: byId.get(upload.upload_id) ?? null }))
}

export function receivedBytes(upload: Upload): number {
  return upload.received.reduce((sum, r) => sum + r.size, 0)
}

const VIEWER_KEY = 'streamd.viewer-id'

/** The server-issued id an anonymous viewer's views count under. */
export function viewerId(): string | null {
  try {
    return localStorage.getItem(VIEWER_KEY)
  } catch {
    return null
  }
}

export function setViewerId(id: string): void {
  try {
    localStorage.setItem(VIEWER_KEY, id)
  } catch {
    // private mode: each page load is a new viewer
  }
}
