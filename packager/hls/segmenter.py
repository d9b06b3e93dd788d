"""Where segments are cut: packets in, complete :class:`Segment` objects out. Sans-IO, no clock.

The rule (every rendition, see ``packager.types``): a segment starts on a video keyframe and
is cut at the first later keyframe whose pts is at least the target duration after its start.
One refinement keeps segments within ``MAX_OVERSHOOT_MS`` of the target when the keyframe
interval does not divide it (1.5 s GOPs with a 2 s target would otherwise give 3 s segments):
a keyframe at least half the target in is also a cut when waiting one more interval (the last
one seen) would overshoot. Sources whose interval exceeds the target get one segment per GOP.

The *source* rendition decides the cuts and records each segment start in a :class:`CutPlan`;
ladder renditions follow the plan (cut at their first keyframe at or after each planned start)
instead of re-deriving it, so an extra or missing keyframe in a rung cannot shift its
boundaries, and their segments take the source's sequence numbers.

Audio is assigned by pts: a frame belongs to the segment whose [start, next start) holds it.
The source's audio arrives interleaved a little behind the video keyframe that closes a
segment (by the keyframe's composition offset plus the publisher's interleaving: 20-70 ms). A
closed segment waits for that audio (``closing``) at most ``audio_wait_ms`` of video decode
time past the keyframe; frames that arrive later open the next segment instead (the muxer's
audio clock keeps them in place, so only the boundary moves, by a frame or three). The default,
0, publishes at the keyframe, as nginx-rtmp does: the lowest lag. Ladder renditions get the
source's audio long before their encoded video, so their audio boundaries are always exact.

LL-HLS parts (``part_ms`` > 0): a segment in progress is also cut into parts at fixed offsets
from its first frame's decode time (dts0 + k x step), so renditions cut at the same segment
starts cut their parts at the same times too. The step is ``part_ms`` rounded to a
whole number of the source's frames (10 frames at 30 fps for 333 ms), so every part lasts the
same and none exceeds the PART-TARGET the playlist announces; the source picks it and records
it in the :class:`CutPlan`, and ladder renditions take it from there. A part is handed out
as soon as the first video frame past its end arrives (that frame's decode time ends the part's
last sample); it takes the segment's audio up to that time, and audio that comes later goes
into the next part. The segment's last part is handed out just before the segment itself, so
a segment's parts hold exactly its packets. Output is in publishing order: a segment's parts,
then the segment.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator

from media.types import AudioConfig, MediaPacket, VideoConfig
from packager.hls.mp4 import AAC_FRAME_SAMPLES
from packager.hls.segment import Part, Segment, TrackFormat

#: Ladder keyframes match a planned start within this many ms (timestamp rounding).
FOLLOW_TOLERANCE_MS = 10
#: A segment may run this much past the target before an earlier keyframe is preferred: no
#: segment is more than 0.5 s over target while keyframes come at least once per target.
MAX_OVERSHOOT_MS = 500
_PENDING_AUDIO_MS = 10_000  # audio kept while no segment is open (before the first keyframe)
_DEFAULT_FRAME_MS = 33
#: A frame this close before a part boundary starts the next part (integer-ms timestamps).
PART_TOLERANCE_MS = 2


def part_step(target_ms: int, frame_ms: float) -> float:
    """The part length: ``target_ms`` rounded to a whole number of frames."""
    return max(1, round(target_ms / frame_ms)) * frame_ms


class CutPlan:
    """Segment starts chosen by the source rendition: (start pts in ms, sequence number)."""

    def __init__(self, keep: int = 512) -> None:
        self._starts: collections.deque[tuple[int, int]] = collections.deque(maxlen=keep)
        self.part_step_ms: float | None = None  # chosen by the source (LL-HLS parts)

    def add(self, start_ms: int, sequence: int) -> None:
        self._starts.append((start_ms, sequence))

    def has_start_in(self, after_ms: int, until_ms: int) -> bool:
        """Whether a planned start lies in (after_ms, until_ms]."""
        return any(after_ms < s <= until_ms for s, _ in reversed(self._starts))

    def sequence_for(self, start_ms: int) -> int | None:
        """The sequence number of the planned segment starting at ``start_ms`` (or of the one
        after the latest planned start before it)."""
        before: int | None = None
        for s, seq in reversed(self._starts):
            if abs(s - start_ms) <= FOLLOW_TOLERANCE_MS:
                return seq
            if s < start_ms and before is None:
                before = seq + 1
        return before


class _PartCursor:
    """How much of one segment has gone out as parts."""

    __slots__ = ("anchor_ms", "audio", "index", "start_ms", "video")

    def __init__(self, anchor_ms: int) -> None:
        self.video = 0  # packets already in parts
        self.audio = 0
        self.index = 0  # of the next part
        self.anchor_ms = anchor_ms  # where part 0 starts: part k starts k steps later
        self.start_ms = anchor_ms  # of the next part


Output = Segment | Part


class Segmenter:
    def __init__(
        self,
        target_ms: int,
        *,
        audio_wait_ms: int = 0,
        plan: CutPlan | None = None,
        follow: bool = False,
        part_ms: int = 0,
    ) -> None:
        self.target_ms = target_ms
        self.part_ms = part_ms
        self.audio_wait_ms = audio_wait_ms
        self.plan = plan
        self.follow = follow
        self.video_config: VideoConfig | None = None
        self.audio_config: AudioConfig | None = None
        self.dropped_video = 0  # before the first keyframe of a session
        self.dropped_audio = 0  # before the first segment, or too late for its segment
        self._current: Segment | None = None
        self._closing: collections.deque[Segment] = collections.deque()
        self._pending_audio: collections.deque[MediaPacket] = collections.deque()
        self._next_sequence: int | None = None
        self._format_changed = False
        self._discontinuity = False
        self._opened = 0  # segments started so far
        self._emitted = False  # whether a segment of this session was handed out
        self._last_keyframe_ms: int | None = None
        self._audio_high = -(1 << 62)
        self._video_high = -(1 << 62)
        self._cursors: dict[int, _PartCursor] = {}  # segment sequence -> its parts so far
        #: Where the segment closed by the last flush (or gap) ends: a session that follows
        #: is placed there (packager.pipeline), so the timeline has no hole.
        self.last_end_ms: int | None = None
        self._part_step: float | None = None

    @property
    def max_duration_ms(self) -> int:
        """The longest segment the rule cuts while keyframes come at least once per target;
        a longer one follows a longer keyframe interval."""
        return self.target_ms + MAX_OVERSHOOT_MS

    # --- input ---

    def set_video_config(self, config: VideoConfig) -> None:
        if config != self.video_config:
            self.video_config = config
            self._config_changed()

    def set_audio_config(self, config: AudioConfig) -> None:
        if config != self.audio_config:
            self.audio_config = config
            self._config_changed()

    def push(self, packet: MediaPacket) -> list[Output]:
        if packet.kind == "video":
            if self.video_config is not None:
                self._push_video(packet)
        elif self.audio_config is not None:
            self._push_audio(packet)
        out = list(self._ready())
        if self.part_ms > 0 and self._current is not None and not self._closing:
            out.extend(self._cut_parts(self._current))
        return out

    def flush(self, until_ms: int | None = None) -> list[Output]:
        """End of a session (or of a ladder generation): close and return every segment.

        Audio at or after ``until_ms`` belongs to what comes next and is kept for it. The next
        segment is marked as a discontinuity.
        """
        out = self._close_all(until_ms)
        if self._opened:
            self._discontinuity = True
        return out

    def gap(self) -> list[Output]:
        """Packets were lost (a slow consumer resynced): close the segment in progress at its
        last sample and start again at the next keyframe. Timestamps go on, so no
        discontinuity is signalled; the playlist just has a shorter segment before the hole."""
        return self._close_all(None)

    def interrupt(self) -> list[Output]:
        """The video stops here and resumes later after a hole in media time (a shed ladder
        rung): close everything at the end of the last frame; the next segment is a
        discontinuity. Audio past that end waits (bounded) for the segment that resumes."""
        current = self._current
        until = None
        if current is not None and current.video:
            until = max(p.pts_ms for p in current.video) + self._frame_ms(current)
        return self.flush(until)

    # --- video ---

    def _push_video(self, packet: MediaPacket) -> None:
        self._video_high = max(self._video_high, packet.dts_ms)
        current = self._current
        if packet.keyframe and (current is None or self._should_cut(current, packet)):
            self._open(packet)
        elif current is None:
            self.dropped_video += 1  # no keyframe yet: nothing to start a segment with
        else:
            current.video.append(packet)
        if packet.keyframe:
            self._last_keyframe_ms = packet.pts_ms

    def _should_cut(self, current: Segment, keyframe: MediaPacket) -> bool:
        if self._format_changed:
            return True
        elapsed = keyframe.pts_ms - current.start_ms
        if elapsed <= 0:
            return False
        if self.follow and self.plan is not None:
            return self.plan.has_start_in(
                current.start_ms + FOLLOW_TOLERANCE_MS, keyframe.pts_ms + FOLLOW_TOLERANCE_MS
            )
        if elapsed >= self.target_ms:
            return True
        last = self._last_keyframe_ms
        interval = keyframe.pts_ms - last if last is not None else 0
        return 2 * elapsed >= self.target_ms and elapsed + interval >= self.max_duration_ms

    # --- audio ---

    def _push_audio(self, packet: MediaPacket) -> None:
        self._audio_high = max(self._audio_high, packet.pts_ms)
        if self.video_config is None and not self.follow:  # ladder renditions have video
            current = self._current
            if current is None or packet.pts_ms - current.start_ms >= self.target_ms:
                self._open(packet)
            else:
                current.audio.append(packet)
            return
        for segment in itertools.chain([self._current], reversed(self._closing)):
            if segment is not None and packet.pts_ms >= segment.start_ms:
                segment.audio.append(packet)
                return
        earliest = self._closing[0] if self._closing else self._current
        if earliest is not None and self._emitted:
            # Its segment is out already (published without waiting for it): it opens the
            # next one, where the muxer's audio clock still places it right after its
            # predecessor, so nothing is lost and no gap is heard.
            earliest.audio.append(packet)
            return
        if self._current is None and not self._closing:
            self._pending_audio.append(packet)
            while packet.pts_ms - self._pending_audio[0].pts_ms > _PENDING_AUDIO_MS:
                self._pending_audio.popleft()
                self.dropped_audio += 1
        else:
            self.dropped_audio += 1  # older than every open segment: its segment is out

    # --- segments ---

    def _open(self, first: MediaPacket) -> None:
        """Close the current segment at ``first`` (a keyframe, or an audio frame in audio-only
        streams) and start the next one with it."""
        start = first.pts_ms
        previous = self._current
        carried: list[MediaPacket] = []
        if previous is not None:
            previous.duration_ms = start - previous.start_ms
            previous.video_end_dts = first.dts_ms
            carried = [p for p in previous.audio if p.pts_ms >= start]
            previous.audio = [p for p in previous.audio if p.pts_ms < start]
            self._closing.append(previous)
        elif self._pending_audio:
            self.dropped_audio += sum(1 for p in self._pending_audio if p.pts_ms < start)
            carried = [p for p in self._pending_audio if p.pts_ms >= start]
            self._pending_audio.clear()
        segment = Segment(
            fmt=TrackFormat(self.video_config, self.audio_config),
            sequence=self._sequence_for(start),
            start_ms=start,
            # A new init segment (codec parameters changed) is a discontinuity too (RFC 8216
            # 4.3.2.3), and so is the first segment after a session boundary.
            discontinuity=self._discontinuity or self._format_changed,
        )
        if first.kind == "video":
            segment.video.append(first)
        else:
            segment.audio.append(first)
        segment.audio.extend(carried)
        self._current = segment
        self._discontinuity = self._format_changed = False
        self._opened += 1
        if self.plan is not None and not self.follow:
            self.plan.add(start, segment.sequence)
        if self.part_ms > 0:
            # Parts are cut on the decode timeline, from the keyframe's decode time: with
            # B-frames, the frames decoded in [dts0 + k step, dts0 + (k+1) step) are those shown
            # in [pts0 + k step, ...), so the parts of a rendition with B-frames and of one
            # without (the ladder) hold the same pictures.
            self._cursors[segment.sequence] = _PartCursor(first.dts_ms)

    def _sequence_for(self, start_ms: int) -> int:
        if self._next_sequence is None:  # the rendition's first segment
            planned = self.plan.sequence_for(start_ms) if self.follow and self.plan else None
            self._next_sequence = planned or 0
        sequence = self._next_sequence
        self._next_sequence += 1
        return sequence

    def _ready(self) -> Iterator[Output]:
        """Closed segments whose audio is complete, in order."""
        while self._closing:
            segment = self._closing[0]
            end = segment.start_ms + segment.duration_ms
            if (
                self.audio_config is not None
                and segment.fmt.audio is not None
                and self._audio_high < end
                and self._video_high < segment.video_end_dts + self.audio_wait_ms
            ):
                return
            self._emitted = True
            yield from self._finish(self._closing.popleft())

    def _finish(self, segment: Segment) -> Iterator[Output]:
        """A complete segment, after its last part when parts are cut."""
        cursor = self._cursors.pop(segment.sequence, None)
        if cursor is not None:
            video = segment.fmt.video is not None
            end = segment.video_end_dts if video else segment.start_ms + segment.duration_ms
            part = self._part(segment, cursor, len(segment.video), len(segment.audio),
                              segment.video_end_dts, end, last=True)  # fmt: skip
            if part is not None:
                yield part
        yield segment

    # --- LL-HLS parts ---

    def _cut_parts(self, segment: Segment) -> Iterator[Part]:
        """The parts of the segment in progress that are complete: a video frame (or, without
        video, an audio frame) at or past each part's end has arrived."""
        cursor = self._cursors.get(segment.sequence)
        if cursor is None:
            return
        by_video = segment.fmt.video is not None
        packets = segment.video if by_video else segment.audio
        step = self.part_step_ms(segment)
        if step is None:
            return
        while True:
            end = cursor.anchor_ms + (cursor.index + 1) * step - PART_TOLERANCE_MS
            # The part's first packet stays in it whatever its time: a part is never empty.
            cut = (cursor.video if by_video else cursor.audio) + 1
            while cut < len(packets) and _time(packets[cut], by_video) < end:
                cut += 1
            if cut >= len(packets):
                return
            cut_ms = _time(packets[cut], by_video)
            if by_video:
                v_end = cut
                a_end = cursor.audio
                while a_end < len(segment.audio) and segment.audio[a_end].pts_ms < cut_ms:
                    a_end += 1
                end_dts = segment.video[cut].dts_ms
            else:
                v_end, a_end, end_dts = 0, cut, 0
            part = self._part(segment, cursor, v_end, a_end, end_dts, cut_ms, last=False)
            if part is not None:
                yield part

    def part_step_ms(self, segment: Segment | None = None) -> float | None:
        """The part length in ms (see the module docstring); None until it is known."""
        if self._part_step is not None or self.part_ms <= 0:
            return self._part_step
        if self.follow:
            self._part_step = self.plan.part_step_ms if self.plan is not None else None
            return self._part_step
        video = self.video_config
        if video is not None and video.frame_rate:
            frame_ms = 1000 / float(video.frame_rate)
        elif video is not None and segment is not None and len(segment.video) >= 2:
            frame_ms = float(self._frame_ms(segment))
        elif video is not None:
            return None  # a frame rate from the first two frames
        else:
            frame_ms = float(AAC_FRAME_SAMPLES * 1000 / self.audio_config.sample_rate
                             if self.audio_config else self.part_ms)  # fmt: skip
        self._part_step = part_step(self.part_ms, frame_ms)
        if self.plan is not None and self.plan.part_step_ms is None:
            self.plan.part_step_ms = self._part_step
        return self._part_step

    def _part(
        self, segment: Segment, cursor: _PartCursor, v_end: int, a_end: int, end_dts: int,
        end_ms: int, *, last: bool,
    ) -> Part | None:  # fmt: skip
        video = segment.video[cursor.video : v_end]
        audio = segment.audio[cursor.audio : a_end]
        if not video and not audio:
            return None
        part = Part(
            fmt=segment.fmt,
            sequence=segment.sequence,
            index=cursor.index,
            duration_ms=max(end_ms - cursor.start_ms, 1),
            video=video,
            audio=audio,
            video_end_dts=end_dts,
            independent=video[0].keyframe if video else True,  # audio frames all are
            last=last,
            discontinuity=segment.discontinuity,
        )
        cursor.video, cursor.audio, cursor.start_ms = v_end, a_end, end_ms
        cursor.index += 1
        return part

    def _close_all(self, until_ms: int | None) -> list[Output]:
        current, self._current = self._current, None
        if current is not None:
            if until_ms is not None:
                kept = [p for p in current.audio if p.pts_ms >= until_ms]
                current.audio = [p for p in current.audio if p.pts_ms < until_ms]
            else:
                kept = []
            self._finish_last(current)
            self.last_end_ms = current.start_ms + current.duration_ms
            self._closing.append(current)
            self._pending_audio.extend(kept)
        out = [item for segment in self._closing for item in self._finish(segment)]
        self._closing.clear()
        self._emitted = False
        self._last_keyframe_ms = None
        self._audio_high = self._video_high = -(1 << 62)
        return out

    def _finish_last(self, segment: Segment) -> None:
        """Duration of a segment with no successor: up to the end of its last frame."""
        if segment.video:
            frame = self._frame_ms(segment)
            segment.video_end_dts = segment.video[-1].dts_ms + frame
            end = max(p.pts_ms for p in segment.video) + frame
        elif segment.audio and segment.fmt.audio is not None:
            rate = segment.fmt.audio.sample_rate
            end = segment.audio[-1].pts_ms + AAC_FRAME_SAMPLES * 1000 // rate
        else:
            end = segment.start_ms
        segment.duration_ms = max(end - segment.start_ms, 1)

    def _frame_ms(self, segment: Segment) -> int:
        video = segment.video
        if len(video) >= 2 and video[-1].dts_ms > video[0].dts_ms:
            return round((video[-1].dts_ms - video[0].dts_ms) / (len(video) - 1))
        rate = segment.fmt.video.frame_rate if segment.fmt.video else None
        return round(1000 / rate) if rate else _DEFAULT_FRAME_MS

    def _config_changed(self) -> None:
        current = self._current
        if current is not None and not self._closing and self._opened == 1:
            # The first segment of all: a config that arrives a little after the first keyframe
            # (audio often does) joins it instead of forcing a new init segment.
            current.fmt = TrackFormat(self.video_config, self.audio_config)
        elif self._opened:
            self._format_changed = True


def _time(packet: MediaPacket, by_video: bool) -> int:
    """Where a part boundary is measured: video decode time, or audio presentation time."""
    return packet.dts_ms if by_video else packet.pts_ms
