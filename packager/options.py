"""What the live packager is built with, in one frozen dataclass.

The operator's settings come from :class:`config.settings.Settings`, the one home of their
environment names, defaults, ranges and help: build the options with
:meth:`PackagerOptions.from_settings`. The few knobs that are not settings are the constants
below. Nothing here reads the environment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from config.parsers import RungSpec
from config.settings import SegmentFormat, Settings
from packager.ladder.shedding import LadderPolicy
from packager.types import Rung

# Not settings: fixed until LL-HLS (fragments, parts) or a measured need asks for a knob.
#: Duration of each fMP4 fragment (moof+mdat) inside a segment, in seconds; 0 gives one
#: fragment per segment. LL-HLS parts will be published at these boundaries.
FRAGMENT_DURATION = 0.0
#: When a source segment is complete (its next keyframe arrived) but its audio has not caught
#: up with the cut, wait at most this much media time (video decode time past that keyframe)
#: for it. 0 publishes at once, the lowest lag; audio that comes later starts the next
#: segment. Around 0.1 gives audio boundaries exactly at the cut, for ~50 ms more.
AUDIO_WAIT = 0.0
#: Segments kept on storage after they left a live playlist when not recording (players that
#: loaded an older playlist may still ask for them).
KEEP_AFTER_WINDOW = 4
#: Items buffered between the publish session and the pipeline (about 8 s at 30 fps).
QUEUE_ITEMS = 512


def to_rungs(specs: Iterable[RungSpec]) -> tuple[Rung, ...]:
    """The ladder as the packager runs it, from the rungs as configured."""
    return tuple(Rung(*spec) for spec in specs)


@dataclass(frozen=True, slots=True)
class PackagerOptions:
    # From Settings (see its hls_* fields for meaning, default and range):
    target_duration: float  # seconds; segments are cut at source keyframes
    window: int  # segments in a live media playlist
    segment_format: SegmentFormat
    part_target: float  # seconds; 0: no LL-HLS parts (off, or MPEG-TS segments)
    recording: bool  # keep every segment and publish a VOD when the live ends
    reconnect_window: float  # seconds a live waits for its publisher to come back
    thumbnail_interval: float  # seconds between poster refreshes
    ladder: tuple[Rung, ...]  # rungs at or above the source's size are skipped
    x264_preset: str
    ladder_shedding: bool
    ladder_backlog: float  # seconds of source video (at 30 fps) waiting for the ladder
    #: Seconds between passes finalising recordings nobody has written to for
    #: ``reconnect_window`` + 60 s (another node died); 0: only at start-up.
    recovery_interval: float
    health_interval: float  # seconds between stream-health samples of each live on air
    # The constants above, as fields so that a benchmark or test can vary them (replace()):
    fragment_duration: float
    audio_wait: float
    keep_after_window: int
    queue_items: int

    @classmethod
    def from_settings(cls, settings: Settings) -> PackagerOptions:
        return cls(
            target_duration=settings.hls_target_duration,
            window=settings.hls_window,
            segment_format=settings.hls_segment_format,
            part_target=settings.hls_part_target if settings.hls_parts else 0.0,
            recording=settings.hls_recording,
            reconnect_window=settings.hls_reconnect_window,
            thumbnail_interval=settings.hls_thumbnail_interval,
            ladder=to_rungs(settings.hls_ladder),
            x264_preset=settings.hls_x264_preset,
            ladder_shedding=settings.hls_ladder_shedding,
            ladder_backlog=settings.hls_ladder_backlog,
            recovery_interval=settings.hls_recovery_interval,
            health_interval=settings.health_interval,
            fragment_duration=FRAGMENT_DURATION,
            audio_wait=AUDIO_WAIT,
            keep_after_window=KEEP_AFTER_WINDOW,
            queue_items=QUEUE_ITEMS,
        )

    @property
    def ladder_policy(self) -> LadderPolicy:
        # Shedding starts at half the queue (LadderPolicy.shed_at).
        packets = max(10, round(self.ladder_backlog * 30))
        return LadderPolicy(queue_packets=packets, shedding=self.ladder_shedding)

    @property
    def target_ms(self) -> int:
        return round(self.target_duration * 1000)

    @property
    def part_ms(self) -> int:
        return round(self.part_target * 1000)

    @property
    def target_duration_tag(self) -> int:
        """EXT-X-TARGETDURATION before any segment is known: the target, rounded up."""
        return max(1, math.ceil(self.target_duration - 1e-9))
