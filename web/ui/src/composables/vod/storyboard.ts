// Scrubbing previews: the WebVTT thumbnails track the transcoder writes (storyboard.vtt), whose
// cues name a crop of a sprite sheet ("storyboard.jpg#xywh=0,0,160,90"), as JW Player, Video.js
// and Vidstack read them.

export interface StoryboardCue {
  start: number
  end: number
  url: string // absolute, without the fragment
  x: number
  y: number
  w: number
  h: number
}

/** "01:02:03.500" or "02:03.500" → seconds; NaN when it is not a timestamp. */
export function parseTimestamp(text: string): number {
  const m = /^(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?$/.exec(text.trim())
  if (!m) return NaN
  const [, h, min, s, ms] = m
  return Number(h ?? 0) * 3600 + Number(min) * 60 + Number(s) + Number((ms ?? '0').padEnd(3, '0')) / 1000
}

const XYWH = /#xywh=(?:pixel:)?(\d+),(\d+),(\d+),(\d+)$/

/** The cues of a thumbnails track, sorted by start; cues without a crop or with a bad time are
 * skipped. `base`: the track's own URL (cue URLs are relative to it). */
export function parseStoryboard(text: string, base: string): StoryboardCue[] {
  const cues: StoryboardCue[] = []
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\r|\n/)
  for (let i = 0; i < lines.length; i++) {
    const arrow = lines[i].indexOf('-->')
    if (arrow < 0) continue
    const start = parseTimestamp(lines[i].slice(0, arrow))
    // Cue settings may follow the end time.
    const end = parseTimestamp(lines[i].slice(arrow + 3).trim().split(/\s+/)[0] ?? '')
    const target = (lines[i + 1] ?? '').trim()
    const crop = XYWH.exec(target)
    if (Number.isNaN(start) || Number.isNaN(end) || !crop || end < start) continue
    let url: string
    try {
      url = new URL(target.slice(0, crop.index), base).href
    } catch {
      continue
    }
    cues.push({ start, end, url, x: +crop[1], y: +crop[2], w: +crop[3], h: +crop[4] })
    i += 1
  }
  return cues.sort((a, b) => a.start - b.start)
}

/** The cue showing at `time` (binary search), or the nearest before it in a gap. */
export function cueAt(cues: StoryboardCue[], time: number): StoryboardCue | null {
  let lo = 0
  let hi = cues.length - 1
  let found: StoryboardCue | null = null
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (cues[mid].start <= time) {
      found = cues[mid]
      lo = mid + 1
    } else hi = mid - 1
  }
  return found ?? cues[0] ?? null
}
