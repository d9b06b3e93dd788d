"""Placeholder: the contract's probe types, so transcode.py can import them. The "probe"
helper writes the real module (with ``probe()``); the integrator takes that version."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    max_duration_s: float = 6 * 3600
    max_width: int = 7680
    max_height: int = 4320
    max_fps: float = 120.0
    probe_bytes: int = 32 << 20  # FFmpeg probesize
    analyze_s: float = 10.0  # FFmpeg analyzeduration
    decode_budget_s: float = 20.0  # wall time allowed to decode the check frames


@dataclass(frozen=True, slots=True)
class ProbeResult:
    container: str  # the demuxer that matched, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    duration_s: float  # trustworthy (checked against packets), > 0
    width: int  # from decoded frames, not only the header
    height: int
    fps: Fraction | None  # average frame rate, None if unknown
    video_codec: str  # FFmpeg codec name, e.g. "h264"
    audio_codec: str | None
    audio_channels: int | None
    audio_sample_rate: int | None
    bit_rate: int | None


class VodRejected(Exception):
    """The file cannot become a video. str(exc) is one human sentence for the uploader
    (shown in the UI), e.g. "The file is not a video container streamd accepts (mp4, mov,
    mkv, webm, flv, ts, avi)."; `code` is a short machine slug ("format", "no_video",
    "too_long", "too_large", "undecodable", "mismatch", "empty", ...)."""

    code: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
