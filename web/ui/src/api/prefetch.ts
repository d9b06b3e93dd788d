// Requests /boot.js (vite.config.ts) started before the app loaded (the watch page's live), taken once by the
// page that needs them; later reads go to the API as usual.
import { readResponse } from './client'

export function takePrefetched<T>(path: string): Promise<T> | null {
  const started = window.__streamdPrefetch?.[path]
  if (!started) return null
  delete window.__streamdPrefetch![path]
  return started.then((response) => readResponse<T>(response))
}
