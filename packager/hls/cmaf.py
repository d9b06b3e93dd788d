"""CMAF-style fragmented MP4 media segments: each segment is a run of moof+mdat fragments.

A fragment holds one ``traf`` per track (``tfhd`` with default-base-is-moof, ``tfdt`` with the
decode time of its first sample, one ``trun``) and one ``mdat`` with the video samples followed
by the audio samples. A segment is one fragment by default, or several (``fragment_ms``); with
LL-HLS each part is one fragment (:meth:`CmafMuxer.media_part`), and the segment is its parts'
fragments end to end.

Timing rules, the ones players are strict about:
- video decode times are the packets' dts in 90 kHz ticks; a sample lasts until the next dts,
  the last one of a segment until the next segment's first dts (known, since a segment closes
  when the next keyframe arrives), or the average frame duration at the end of a session;
- composition offsets (pts - dts) are signed, so ``trun`` is version 1 (B-frames, and encoders
  that shift pts below dts, both work);
- AAC frames last 1024 ticks at the sample rate and are laid end to end across segments; the
  millisecond timestamps re-anchor the run only when they jump by more than half a frame
  (a gap in the input), so rounding in the FLV timestamps never makes audio drift or stutter.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from media.types import MediaPacket
from packager.hls.mp4 import (
    AAC_FRAME_SAMPLES,
    AUDIO_TRACK,
    VIDEO_TIMESCALE,
    VIDEO_TRACK,
    box,
    full_box,
    init_segment,
)
from packager.hls.segment import Part, Segment, TrackFormat

# trun flags: data offset, then per sample duration, size, flags, composition time offset.
_TRUN_VIDEO = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800
_TRUN_AUDIO = 0x000001 | 0x000100 | 0x000200
_TFHD_BASE_IS_MOOF = 0x020000
_TFHD_DEFAULT_FLAGS = 0x000020
# Sample flags (14496-12 8.8.3.1): a sync sample depends on nothing; any other depends on
# others and is not a sync sample.
SYNC_SAMPLE = 0x02000000
NON_SYNC_SAMPLE = 0x01010000
_MS_TO_VIDEO_TICKS = VIDEO_TIMESCALE // 1000


class CmafMuxer:
    """fMP4 segments of one rendition; keeps the fragment counter and the audio clock."""

    extension = ".m4s"
    content_type = "video/iso.segment"

    def __init__(self, fragment_ms: int = 0) -> None:
        self.fragment_ms = fragment_ms
        self._sequence = 0  # mfhd sequence_number: strictly increasing per track
        self._audio_next: int | None = None  # sample time where the next AAC frame starts

    def init_segment(self, fmt: TrackFormat) -> bytes:
        return init_segment(fmt)

    def media_segment(self, segment: Segment) -> bytes:
        video_times = _video_timing(segment.video, segment.video_end_dts)
        audio_times = self._audio_timing(segment.fmt, segment.audio)
        parts: list[bytes] = []
        for v_range, a_range in self._fragment_ranges(segment):
            self._sequence += 1
            parts.append(
                _fragment(
                    self._sequence,
                    segment.video[v_range[0] : v_range[1]],
                    video_times[v_range[0] : v_range[1] + 1],
                    segment.audio[a_range[0] : a_range[1]],
                    audio_times[a_range[0] : a_range[1] + 1],
                )
            )
        return b"".join(parts)

    def media_part(self, part: Part) -> bytes:
        """One LL-HLS part as one fragment; the same counters as whole segments, so a segment
        made of its parts' fragments is what :meth:`media_segment` would have made of it with
        fragments cut at the parts' boundaries."""
        self._sequence += 1
        return _fragment(
            self._sequence,
            part.video,
            _video_timing(part.video, part.video_end_dts),
            part.audio,
            self._audio_timing(part.fmt, part.audio),
        )

    def _fragment_ranges(self, segment: Segment) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Index ranges of video and audio samples for each fragment of the segment."""
        nv, na = len(segment.video), len(segment.audio)
        if self.fragment_ms <= 0 or segment.duration_ms <= self.fragment_ms:
            return [((0, nv), (0, na))]
        bounds = list(range(segment.start_ms + self.fragment_ms,
                            segment.start_ms + segment.duration_ms, self.fragment_ms))  # fmt: skip
        ranges = []
        v0 = a0 = 0
        for bound in [*bounds, None]:
            v1 = nv if bound is None else _first_at(segment.video, v0, bound, dts=True)
            a1 = na if bound is None else _first_at(segment.audio, a0, bound, dts=False)
            if v1 > v0 or a1 > a0:
                ranges.append(((v0, v1), (a0, a1)))
            v0, a0 = v1, a1
        return ranges

    def _audio_timing(self, fmt: TrackFormat, audio: Sequence[MediaPacket]) -> list[int]:
        """Start time (in samples) of each AAC frame, plus the end of the last one."""
        config = fmt.audio
        if config is None or not audio:
            return [0]
        rate = config.sample_rate
        times: list[int] = []
        expected = self._audio_next
        for packet in audio:
            from_ms = packet.pts_ms * rate // 1000
            # Forward jumps over half a frame are real gaps; anything else is rounding.
            if expected is None or from_ms - expected > AAC_FRAME_SAMPLES // 2:
                expected = from_ms
            times.append(expected)
            expected += AAC_FRAME_SAMPLES
        assert expected is not None
        times.append(expected)
        self._audio_next = expected
        return times


def _first_at(packets: Sequence[MediaPacket], start: int, bound_ms: int, *, dts: bool) -> int:
    i = start
    while i < len(packets) and (packets[i].dts_ms if dts else packets[i].pts_ms) < bound_ms:
        i += 1
    return i


def _video_timing(video: Sequence[MediaPacket], end_dts: int) -> list[int]:
    """Decode time of each video sample in 90 kHz ticks, plus the end of the last one.

    Decode times never go backwards: a publisher that repeats or reorders dts would otherwise
    produce a negative (that is, a four-billion-tick) sample duration.
    """
    times: list[int] = []
    last = -1
    for packet in video:
        tick = max(packet.dts_ms * _MS_TO_VIDEO_TICKS, last + 1, 0)
        times.append(tick)
        last = tick
    if video:
        times.append(max(end_dts * _MS_TO_VIDEO_TICKS, last + 1))
    return times


def _fragment(
    sequence: int,
    video: Sequence[MediaPacket],
    video_times: Sequence[int],
    audio: Sequence[MediaPacket],
    audio_times: Sequence[int],
) -> bytes:
    """moof + mdat for the given samples (either list may be empty, not both)."""
    # Sizes are fixed by the sample counts, so the data offsets (from the moof's first byte,
    # default-base-is-moof) are known before anything is packed.
    traf_video_size = (8 + 16 + 20 + 20 + 16 * len(video)) if video else 0
    traf_audio_size = (8 + 20 + 20 + 20 + 8 * len(audio)) if audio else 0
    moof_size = 8 + 16 + traf_video_size + traf_audio_size
    video_bytes = sum(len(p.data) for p in video)
    trafs: list[bytes] = []
    if video:
        trafs.append(_video_traf(video, video_times, moof_size + 8))
    if audio:
        trafs.append(_audio_traf(audio, audio_times, moof_size + 8 + video_bytes))
    moof = box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)), *trafs)
    assert len(moof) == moof_size, "box size arithmetic is wrong"
    payload = [p.data for p in video] + [p.data for p in audio]
    mdat_size = 8 + video_bytes + sum(len(p.data) for p in audio)
    return b"".join([moof, struct.pack(">I4s", mdat_size, b"mdat"), *payload])


def _video_traf(video: Sequence[MediaPacket], times: Sequence[int], data_offset: int) -> bytes:
    fields: list[int] = []
    for i, packet in enumerate(video):
        fields += (
            times[i + 1] - times[i],
            len(packet.data),
            SYNC_SAMPLE if packet.keyframe else NON_SYNC_SAMPLE,
            (packet.pts_ms - packet.dts_ms) * _MS_TO_VIDEO_TICKS,
        )
    n = len(video)
    trun = full_box(
        b"trun", 1, _TRUN_VIDEO, struct.pack(">Ii", n, data_offset),
        struct.pack(">" + "IIIi" * n, *fields),
    )  # fmt: skip
    tfhd = full_box(b"tfhd", 0, _TFHD_BASE_IS_MOOF, struct.pack(">I", VIDEO_TRACK))
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", times[0]))
    return box(b"traf", tfhd, tfdt, trun)


def _audio_traf(audio: Sequence[MediaPacket], times: Sequence[int], data_offset: int) -> bytes:
    fields: list[int] = []
    for i, packet in enumerate(audio):
        fields += (times[i + 1] - times[i], len(packet.data))
    n = len(audio)
    trun = full_box(
        b"trun", 0, _TRUN_AUDIO, struct.pack(">Ii", n, data_offset),
        struct.pack(">" + "II" * n, *fields),
    )  # fmt: skip
    tfhd = full_box(
        b"tfhd", 0, _TFHD_BASE_IS_MOOF | _TFHD_DEFAULT_FLAGS,
        struct.pack(">II", AUDIO_TRACK, SYNC_SAMPLE),
    )  # fmt: skip
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", times[0]))
    return box(b"traf", tfhd, tfdt, trun)
