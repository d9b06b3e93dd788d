"""Every knob of the live packager, with its default, in one frozen dataclass.

``config/`` owns the environment variables; the composition root builds a
:class:`PackagerOptions` from them (proposed names in the README's packager section, each
``STREAMD_HLS_<FIELD>``). Nothing here reads the environment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from packager.ladder.shedding import LadderPolicy
from packager.types import DEFAULT_LADDER, Rung

SegmentFormat = Literal["cmaf", "ts"]


@dataclass(frozen=True, slots=True)
class PackagerOptions:
    #: Segment duration aimed at, in seconds. Segments are cut at source keyframes, so a
    #: source whose keyframe interval is longer gives longer segments (and a warning).
    target_duration: float = 2.0
    #: Segments listed in a live media playlist (Apple asks for at least 6 with 2 s segments).
    window: int = 6
    #: ``cmaf``: fragmented MP4 (init.mp4 + .m4s); ``ts``: MPEG-TS (.ts; H.264/HEVC + AAC).
    segment_format: SegmentFormat = "cmaf"
    #: Keep every segment and publish a VOD (a ``videos`` row) when the live ends.
    recording: bool = True
    #: How long a live waits for its publisher to come back before it ends, in seconds.
    reconnect_window: float = 30.0
    #: Root of local storage; ``hls/...`` keys live below it (``DATA_DIR/media`` in serve).
    storage_root: Path = Path("./var/media")
    #: Seconds between poster refreshes (used by the thumbnailer).
    thumbnail_interval: float = 10.0
    #: The transcoded ladder (used by the ladder; rungs at or above the source are skipped).
    ladder: tuple[Rung, ...] = field(default=DEFAULT_LADDER)
    #: libx264 preset of the ladder's encoders.
    x264_preset: str = "veryfast"
    #: Shed the costliest rungs while the machine cannot transcode in real time. Off, a slow
    #: ladder only lags, by up to ``ladder_backlog``, and then drops packets.
    ladder_shedding: bool = True
    #: Seconds of source video (counted at 30 fps) that may wait for the ladder's decoder;
    #: shedding starts at half of it.
    ladder_backlog: float = 3.0
    #: Duration of each fMP4 fragment (moof+mdat) inside a segment, in seconds; 0 gives one
    #: fragment per segment. LL-HLS parts will be published at these boundaries.
    fragment_duration: float = 0.0
    #: A segment may run this much past the target before the segmenter prefers an earlier
    #: keyframe (the issue's "none more than 0.5 s over target").
    max_overshoot: float = 0.5
    #: When a source segment is complete (its next keyframe arrived) but its audio has not
    #: caught up with the cut, wait at most this much media time (video decode time past that
    #: keyframe) for it. 0 publishes at once — the lowest lag; audio that comes later starts
    #: the next segment. Around 0.1 gives audio boundaries exactly at the cut, for ~50 ms more.
    audio_wait: float = 0.0
    #: Segments still on storage after they left a live playlist when not recording (players
    #: that loaded an older playlist may still ask for them).
    keep_after_window: int = 4
    #: Items buffered between the publish session and the pipeline (about 8 s at 30 fps).
    queue_items: int = 512
    #: Seconds between two passes that finalise recordings some process left unfinished and
    #: nobody has written to for ``reconnect_window`` + 60 s (another node died); 0: only at
    #: start-up.
    recovery_interval: float = 60.0

    def __post_init__(self) -> None:
        # Programming errors only: config/ validates what operators type.
        if not (0.5 <= self.target_duration <= 30):
            raise ValueError("target_duration must be within 0.5..30 s")
        if self.window < 3:
            raise ValueError("window must be at least 3 segments")
        if self.segment_format not in ("cmaf", "ts"):
            raise ValueError("segment_format must be 'cmaf' or 'ts'")
        if min(self.reconnect_window, self.fragment_duration, self.audio_wait,
               self.recovery_interval) < 0:  # fmt: skip
            raise ValueError("durations must not be negative")

    @property
    def ladder_policy(self) -> LadderPolicy:
        packets = max(10, round(self.ladder_backlog * 30))
        return LadderPolicy(queue_packets=packets, shedding=self.ladder_shedding)

    @property
    def target_ms(self) -> int:
        return round(self.target_duration * 1000)

    @property
    def target_duration_tag(self) -> int:
        """EXT-X-TARGETDURATION before any segment is known: the target, rounded up."""
        return max(1, math.ceil(self.target_duration - 1e-9))
