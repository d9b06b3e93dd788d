"""Stream health of one live, as the streamer's studio page graphs it (sans-IO).

A :class:`HealthMeter` counts what a pipeline is fed and what its ladder emits; ``sample(now)``
sums up the interval since the previous sample as a JSON-able dict. No IO and no clock reads:
the owner (the Packager) passes ``now`` from a monotonic clock, so tests never sleep.

The per-packet methods are on the pipeline's hot path: a few integer operations each, nothing
allocated.

``fps`` is measured in *media* time (frames over the span of their decode timestamps), not
wall time: it is the rate the encoder produces, unaffected by the sampling tick's jitter or by
a publisher catching up after a network stall (a burst faster than real time). Stalls show in
the bitrate, which is measured in wall time: bytes received per second of the interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class HealthMeter:
    __slots__ = (
        "_audio_bytes", "_audio_packets", "_closed_frames", "_closed_ms", "_codec", "_height",
        "_key_dts", "_key_interval", "_last_dts", "_order", "_rungs", "_shed", "_since",
        "_span_frames", "_span_start", "_video_bytes", "_width",
    )  # fmt: skip

    def __init__(self, now: float, ladder: Sequence[str] = ()) -> None:
        """``now``: when counting starts (the first sample's interval begins here);
        ``ladder``: the configured rung names, in the order samples list them."""
        self._since = now
        self._order = {name: i for i, name in enumerate(ladder)}
        self._video_bytes = 0
        self._audio_bytes = 0
        self._audio_packets = 0
        # Frame rate: frames after the span's first decode time, and that time (ms).
        self._span_start: int | None = None
        self._span_frames = 0
        self._last_dts: int | None = None
        # Spans of this interval closed by a gap: their frame intervals and milliseconds.
        self._closed_frames = 0
        self._closed_ms = 0
        self._key_dts: int | None = None  # dts of the last video keyframe, this session
        self._key_interval: int | None = None  # ms between the last two keyframes
        self._codec: str | None = None
        self._width: int | None = None
        self._height: int | None = None
        self._rungs: dict[str, None] = {}  # rungs that have emitted, this ladder
        self._shed: set[str] = set()

    # --- what the pipeline is fed (the hot path) ---

    def video(self, dts_ms: int, keyframe: bool, size: int) -> None:
        self._video_bytes += size
        if self._span_start is None:
            self._span_start = dts_ms
        else:
            self._span_frames += 1
        self._last_dts = dts_ms
        if keyframe:
            if self._key_dts is not None and dts_ms > self._key_dts:
                self._key_interval = dts_ms - self._key_dts
            self._key_dts = dts_ms

    def audio(self, size: int) -> None:
        self._audio_bytes += size
        self._audio_packets += 1

    def video_config(self, codec: str, width: int, height: int) -> None:
        """A new source video config: a new ladder behind it, whose rungs announce themselves
        with their first output (a smaller source skips the larger rungs)."""
        self._codec = codec
        self._width = width or None  # 0: the config does not carry the size (VP9)
        self._height = height or None
        self._rungs.clear()
        self._shed.clear()

    def gap(self) -> None:
        """Packets were lost, or the session ended: the next keyframe and frame measure from
        scratch (the timestamps across the hole say nothing of the encoder's settings; a new
        session starts its own timeline)."""
        self._key_dts = None
        if self._span_frames and self._last_dts is not None and self._span_start is not None:
            self._closed_frames += self._span_frames  # what this interval measured so far
            self._closed_ms += self._last_dts - self._span_start
        self._span_start = None
        self._span_frames = 0
        self._last_dts = None

    # --- what the ladder emits ---

    def rung_output(self, name: str) -> None:
        """The rung emitted something: it is active (again, if it was shed)."""
        if name not in self._rungs:
            self._rungs[name] = None
        if name in self._shed:
            self._shed.discard(name)

    def rung_shed(self, name: str) -> None:
        self._rungs.setdefault(name, None)
        self._shed.add(name)

    # --- the sample ---

    def sample(self, now: float) -> dict[str, Any]:
        """What happened since the previous sample (or since the meter started); counting
        starts again from here."""
        elapsed = now - self._since
        self._since = now
        seconds = elapsed if elapsed > 0 else 0.0

        def kbps(size: int) -> float:
            return round(size * 8 / 1000 / seconds, 1) if seconds else 0.0

        fps: float | None = 0.0  # no video frame in this interval
        frames, ms = self._closed_frames, self._closed_ms
        if self._span_frames:
            frames += self._span_frames
            ms += (self._last_dts or 0) - (self._span_start or 0)
        if frames:
            fps = round(frames * 1000 / ms, 2) if ms > 0 else None
        elif self._video_bytes:
            fps = None  # one frame, the first of a span: no rate yet
        rungs = sorted(self._rungs, key=lambda n: (self._order.get(n, len(self._order)), n))
        out = {
            "bitrate_kbps": kbps(self._video_bytes + self._audio_bytes),
            "video_kbps": kbps(self._video_bytes),
            "audio_kbps": kbps(self._audio_bytes),
            "fps": fps,
            "keyframe_interval_s": (
                None if self._key_interval is None else self._key_interval / 1000
            ),
            "audio": self._audio_packets > 0,
            "video_codec": self._codec,
            "width": self._width,
            "height": self._height,
            "rungs": [n for n in rungs if n not in self._shed],
            "rungs_shed": [n for n in rungs if n in self._shed],
        }
        self._video_bytes = self._audio_bytes = self._audio_packets = 0
        # The next span starts at this one's last frame: its frames are all new intervals.
        self._span_start = self._last_dts
        self._span_frames = self._closed_frames = self._closed_ms = 0
        return out
