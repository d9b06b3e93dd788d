import { describe, expect, it } from 'vitest'
import { keyframeHint, mergeSamples, series } from '@/composables/health'
import { duration } from '@/composables/format'
import { safeNext } from '@/router'
import type { HealthSample } from '@/api/types'

const sample = (secondsAgo: number, extra: Partial<HealthSample> = {}, now = 1_000_000_000): HealthSample => ({
  at: new Date(now - secondsAgo * 1000).toISOString(), bitrate_kbps: 3000, fps: 30, keyframe_interval_s: 2,
  audio: true, rungs_shed: [], viewer_count: 1, ...extra,
})

describe('health series', () => {
  const now = 1_000_000_000
  it('merges by time, replaces duplicates, sorts and keeps the 10 minutes before the newest', () => {
    const merged = mergeSamples([sample(700), sample(10), sample(5)], [sample(5, { fps: 25 }), sample(1)])
    expect(merged.map((s) => Date.parse(s.at))).toEqual([now - 10_000, now - 5_000, now - 1_000])
    expect(merged[1].fps).toBe(25)
  })
  it('knows one instant written two ways (the API says Z, the socket +00:00)', () => {
    const a = { ...sample(1), at: '2026-12-04T10:00:05.123000Z' }
    const b = { ...sample(1), at: '2026-12-04T10:00:05.123+00:00', fps: 29 }
    expect(mergeSamples([a], [b])).toEqual([b])
  })
  it('keeps its window when the browser clock is far off (the server times decide)', () => {
    const old = sample(0, {}, Date.parse('2020-01-01T00:00:00Z'))
    expect(mergeSamples([], [old])).toHaveLength(1)
  })
  it('maps a measure, keeping gaps as null', () => {
    expect(series([sample(2), sample(1, { keyframe_interval_s: null })], (s) => s.keyframe_interval_s).map((p) => p.value)).toEqual([2, null])
  })
  it('hints at OBS keyframe settings only when the interval is long', () => {
    expect(keyframeHint([sample(1)])).toBe(false)
    expect(keyframeHint([sample(1, { keyframe_interval_s: 8 })])).toBe(true)
    expect(keyframeHint([])).toBe(false)
  })
})

describe('small helpers', () => {
  it('formats durations', () => {
    expect(duration(65)).toBe('1:05')
    expect(duration(3725)).toBe('1:02:05')
  })
  it('follows only same-site paths after login', () => {
    expect(safeNext('/lives/3')).toBe('/lives/3')
    expect(safeNext('//evil.example')).toBe('/dashboard')
    expect(safeNext('https://evil.example')).toBe('/dashboard')
    expect(safeNext(undefined)).toBe('/dashboard')
  })
})
