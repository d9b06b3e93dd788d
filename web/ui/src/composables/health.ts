// The studio's stream-health series: the API's last 10 minutes, then samples pushed over the
// chat socket (or polled when the socket is away), merged by time and trimmed to the window.
import type { HealthSample } from '@/api/types'

export const HEALTH_WINDOW_MS = 600_000

/** Samples by their time (the API and the socket write the same instant differently), the last
 * 10 minutes before the newest one: the server's clock, not this browser's, sets the window. */
export function mergeSamples(current: HealthSample[], incoming: HealthSample[]): HealthSample[] {
  const byTime = new Map<number, HealthSample>()
  for (const s of current) byTime.set(Date.parse(s.at), s)
  for (const s of incoming) byTime.set(Date.parse(s.at), s)
  const newest = Math.max(...byTime.keys())
  return [...byTime.entries()]
    .filter(([at]) => newest - at <= HEALTH_WINDOW_MS)
    .sort(([a], [b]) => a - b)
    .map(([, s]) => s)
}

export type Measure = (s: HealthSample) => number | null

export function series(samples: HealthSample[], measure: Measure): { at: number; value: number | null }[] {
  return samples.map((s) => ({ at: Date.parse(s.at), value: measure(s) }))
}

/** OBS's default keyframe interval ("0 = auto") is often 4–10 s; segments want 2 s. */
export function keyframeHint(samples: HealthSample[]): boolean {
  const last = samples.at(-1)
  return last?.keyframe_interval_s != null && last.keyframe_interval_s > 2.5
}
