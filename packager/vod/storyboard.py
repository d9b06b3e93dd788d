"""A video's previews, taken from the transcoder's single decode pass: the poster and the
storyboard (a sprite sheet of small tiles plus the WebVTT track players use for scrubbing
previews, each cue pointing at its tile with a ``#xywh=`` media fragment).

Both are fed every decoded source frame with its time (`push`) and keep only what they need:
the poster a few scaled candidates' brightness and one picture, the storyboard one 160 px tile
per interval (at most ~100 tiles, so the sprite stays a few hundred KB). JPEGs come from
FFmpeg's mjpeg encoder (no image library). Synchronous; runs on the transcoder's thread.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame
from av.video.reformatter import Interpolation, VideoReformatter

from packager.ladder.thumbnails import thumbnail_size

POSTER_NAME = "poster.jpg"
SPRITE_NAME = "storyboard.jpg"
VTT_NAME = "storyboard.vtt"

#: Where the poster is looked for, as fractions of the duration: the first candidate that
#: is not (nearly) black wins, else the brightest.
POSTER_AT = (0.10, 0.20, 0.30, 0.40, 0.50)
#: Mean luma (limited range, 16 = black) below which a candidate counts as black.
DARK_LUMA = 40
POSTER_WIDTH = 1280
TILE_WIDTH = 160
MAX_TILES = 100
COLUMNS = 10
_PROBE_SIZE = 16  # brightness is measured on a 16x16 grey thumbnail


def encode_jpeg(frame: VideoFrame, quality: int) -> bytes:
    """One JPEG of a full-range 4:2:0 frame; ``quality`` is mjpeg's quantiser (2 = best)."""
    encoder = av.CodecContext.create("mjpeg", "w")
    assert isinstance(encoder, VideoCodecContext)  # create() with "w" on a video codec
    encoder.width, encoder.height = frame.width, frame.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 1)
    encoder.options = {"qmin": str(quality), "qmax": str(quality + 1)}
    frame.pts = 0
    frame.time_base = Fraction(1, 1)
    packets = encoder.encode(frame) + encoder.encode(None)
    return b"".join(bytes(p) for p in packets)


def mean_luma(frame: VideoFrame, reformatter: VideoReformatter) -> float:
    grey = reformatter.reformat(frame, _PROBE_SIZE, _PROBE_SIZE, "gray", interpolation="AREA")
    plane = grey.planes[0]
    data = bytes(plane)
    rows = (data[r * plane.line_size : r * plane.line_size + _PROBE_SIZE] for r in range(16))
    return sum(sum(row) for row in rows) / (_PROBE_SIZE * _PROBE_SIZE)


class Poster:
    """Picks the poster: a frame ~10% in that is not black, if one of the candidates isn't."""

    def __init__(self, duration_s: float, width: int = POSTER_WIDTH) -> None:
        self.width = width
        self._due = [duration_s * f for f in POSTER_AT]
        self._best: tuple[float, VideoFrame] | None = None
        self._done = False
        self._reformatter = VideoReformatter()

    def push(self, frame: VideoFrame, t_s: float) -> None:
        if self._done:
            return
        if self._best is None:
            # A fallback for a video shorter than probed; any candidate beats it.
            self._best = (-1.0, self._scale(frame))
        if not self._due or t_s < self._due[0]:
            return
        while self._due and t_s >= self._due[0]:
            self._due.pop(0)
        luma = mean_luma(frame, self._reformatter)
        if luma > self._best[0]:
            self._best = (luma, self._scale(frame))
        self._done = luma >= DARK_LUMA or not self._due

    def _scale(self, frame: VideoFrame) -> VideoFrame:
        w, h = thumbnail_size(frame.width, frame.height, self.width)
        return self._reformatter.reformat(
            frame, w, h, "yuvj420p", interpolation=Interpolation.BICUBIC
        )

    def write(self, out_dir: Path) -> str | None:
        if self._best is None:
            return None
        (out_dir / POSTER_NAME).write_bytes(encode_jpeg(self._best[1], quality=2))
        return POSTER_NAME


def storyboard_interval(duration_s: float, max_tiles: int = MAX_TILES) -> int:
    """Whole seconds between tiles: 1 s, or more so that at most `max_tiles` cover it."""
    return max(1, math.ceil(duration_s / max_tiles))


def _timestamp(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


class Storyboard:
    """One tile per `interval` seconds (the first frame at or after each multiple), packed
    row by row into a `COLUMNS`-wide sprite. A video longer than probed stops at twice
    `max_tiles` tiles; its last cue then runs to the end."""

    def __init__(
        self, duration_s: float, *, tile_width: int = TILE_WIDTH, max_tiles: int = MAX_TILES
    ) -> None:
        self.interval = storyboard_interval(duration_s, max_tiles)
        self.tile_width = tile_width
        self.cap = 2 * max_tiles
        self.tiles: list[tuple[float, VideoFrame]] = []  # (cue start in s, tile)
        self._next = 0.0
        self._size: tuple[int, int] | None = None
        self._reformatter = VideoReformatter()

    def push(self, frame: VideoFrame, t_s: float) -> None:
        if t_s < self._next or len(self.tiles) >= self.cap:
            return
        if self._size is None:
            self._size = thumbnail_size(frame.width, frame.height, self.tile_width)
        w, h = self._size
        tile = self._reformatter.reformat(frame, w, h, "yuvj420p", interpolation="AREA")
        start = 0.0 if not self.tiles else self._next
        self.tiles.append((start, tile))
        self._next = (math.floor(t_s / self.interval) + 1) * self.interval

    def write(self, out_dir: Path, duration_s: float) -> list[str]:
        """storyboard.jpg and storyboard.vtt, cues covering [0, duration_s]; [] without tiles."""
        if not self.tiles or self._size is None:
            return []
        w, h = self._size
        columns = min(COLUMNS, len(self.tiles))
        rows = math.ceil(len(self.tiles) / columns)
        sprite = VideoFrame(columns * w, rows * h, "yuvj420p")
        for index, value in enumerate((0, 128, 128)):  # black
            plane = memoryview(sprite.planes[index])
            plane[:] = bytes([value]) * len(plane)
        cues = ["WEBVTT", ""]
        for i, (start, tile) in enumerate(self.tiles):
            x, y = (i % columns) * w, (i // columns) * h
            _paste(sprite, tile, x, y)
            end = self.tiles[i + 1][0] if i + 1 < len(self.tiles) else max(duration_s, start)
            cues += [
                f"{_timestamp(start)} --> {_timestamp(end)}",
                f"{SPRITE_NAME}#xywh={x},{y},{w},{h}",
                "",
            ]
        (out_dir / SPRITE_NAME).write_bytes(encode_jpeg(sprite, quality=5))
        (out_dir / VTT_NAME).write_text("\n".join(cues), encoding="utf-8")
        return [SPRITE_NAME, VTT_NAME]


def _paste(sprite: VideoFrame, tile: VideoFrame, x: int, y: int) -> None:
    """Copy a 4:2:0 tile into the sprite at (x, y), both even: plane by plane, row by row."""
    for index in range(3):
        shift = 0 if index == 0 else 1  # chroma planes are half size both ways
        dst_plane, src_plane = sprite.planes[index], tile.planes[index]
        dst, src = memoryview(dst_plane), memoryview(src_plane)
        width, height = tile.width >> shift, tile.height >> shift
        x0, y0 = x >> shift, y >> shift
        for row in range(height):
            d = (y0 + row) * dst_plane.line_size + x0
            s = row * src_plane.line_size
            dst[d : d + width] = src[s : s + width]
