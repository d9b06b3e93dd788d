// Upload speed and time left: an exponentially weighted average of the byte rate, weighted by
// time (not by sample), so it reads the same whether progress events come every 50 ms or every
// 2 s. Time is passed in (tests never sleep).

export class RateMeter {
  private last: { at: number; bytes: number } | null = null
  private smoothed: number | null = null

  /** `halfLifeMs`: how long until a change of speed counts half. */
  constructor(private readonly halfLifeMs = 4000, private readonly minGapMs = 250) {}

  /** Bytes per second, or null before there are two samples. */
  get rate(): number | null {
    return this.smoothed
  }

  /** `bytes`: total sent so far (it may go down when a part in flight is dropped and resent). */
  sample(now: number, bytes: number): number | null {
    if (!this.last) {
      this.last = { at: now, bytes }
      return this.smoothed
    }
    const gap = now - this.last.at
    if (gap < this.minGapMs) return this.smoothed
    const instant = (Math.max(0, bytes - this.last.bytes) * 1000) / gap
    const weight = 1 - 2 ** (-gap / this.halfLifeMs)
    this.smoothed = this.smoothed === null ? instant : this.smoothed + weight * (instant - this.smoothed)
    this.last = { at: now, bytes }
    return this.smoothed
  }

  /** Seconds to send `remaining` bytes at the smoothed rate; null when unknown or stalled. */
  eta(remaining: number): number | null {
    if (remaining <= 0) return 0
    if (!this.smoothed || this.smoothed < 1) return null
    return remaining / this.smoothed
  }

  /** After a pause: the paused time is no sample of the speed. */
  reset(): void {
    this.last = null
    this.smoothed = null
  }
}

/** 1536 → "1.5 KB" (decimal units, as disks and networks count). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB']
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000
    unit += 1
  }
  return `${unit === 0 ? value : value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`
}
