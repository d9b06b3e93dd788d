"""When a publisher's socket should wake us: read coalescing and the idle check, without I/O.

Each wake-up costs a Python callback; at 4.5 Mbit/s a publisher's bytes otherwise arrive in
~100 small reads a second. Asking the kernel to wake us only once ``coalesce_s`` worth of the
publisher's own bitrate is buffered (SO_RCVLOWAT, set by the socket glue in ``ingest.server``)
batches them, at the price of that much latency, but never for a keyframe or the frames just
before one (see :meth:`ReadPacing.low_water`). Time is passed in: ``now`` is monotonic seconds.
"""

from __future__ import annotations

from collections.abc import Iterable

from ingest.flv import may_be_keyframe
from ingest.rtmp.message import MessageType
from media.types import MediaPacket

# At most this many bytes held in the kernel, and none below this (not worth a syscall).
MAX_LOW_WATER = 64 * 1024
MIN_LOW_WATER = 4 * 1024
NEVER = 1 << 62  # a dts no stream reaches


class ReadPacing:
    """One publishing connection's pacing; the glue calls :meth:`tick` about once a second."""

    __slots__ = (
        "_coalesce_bytes", "_frame_bytes", "_key_due_dts", "_keyframe_dts", "_last_data",
        "_tick_bytes", "_tick_time", "_video_dts", "_window_ms", "coalesce_s", "tick_s",
    )  # fmt: skip

    def __init__(self, coalesce_s: float, now: float, tick_s: float = 1.0) -> None:
        self.coalesce_s = coalesce_s
        self.tick_s = tick_s
        self._window_ms = int(2000 * coalesce_s)
        self._last_data = now
        self._tick_bytes = 0
        self._tick_time = now
        self._coalesce_bytes = 1  # what coalescing asks for (rate * coalesce_s); 1: off
        self._video_dts = 0  # of the last video packet
        self._keyframe_dts: int | None = None  # of the last keyframe
        self._frame_bytes = 0  # size of the last video packet
        self._key_due_dts = NEVER  # from this video dts on, the next keyframe may come soon

    @property
    def coalescing(self) -> bool:
        return self._coalesce_bytes > 1

    def on_video(self, packet: MediaPacket) -> None:
        """Every video packet: encoders send keyframes at a steady interval (OBS: 2 s),
        measured between the last two, so the next one is due that much after the last."""
        self._video_dts = dts = packet.dts_ms
        self._frame_bytes = len(packet.data)
        if packet.keyframe:
            if self._keyframe_dts is not None:
                gop_ms = dts - self._keyframe_dts
                self._key_due_dts = dts + gop_ms - self._window_ms if gop_ms > 0 else NEVER
            self._keyframe_dts = dts

    def tick(self, now: float, bytes_received: int) -> float:
        """The seconds since the last byte arrived (as of the ticks: no clock read per
        packet), after updating the coalescing target from the rate since the last tick. A
        publisher that went quiet gets no coalescing, so its last bytes are never held."""
        if bytes_received != self._tick_bytes:
            self._last_data = now
        idle = now - self._last_data
        rate = (bytes_received - self._tick_bytes) / max(now - self._tick_time, 1e-3)
        self._tick_bytes, self._tick_time = bytes_received, now
        # In steps of MIN_LOW_WATER: a rate that wavers does not change the option each tick.
        want = int(rate * self.coalesce_s) // MIN_LOW_WATER * MIN_LOW_WATER
        self._coalesce_bytes = want if idle < self.tick_s else 1
        return idle

    def low_water(self, partial_messages: Iterable[tuple[int, int, bytes]]) -> int:
        """The SO_RCVLOWAT to ask for now; ``partial_messages`` are the chunk decoder's
        (message type, bytes still missing, first bytes) of the messages it holds in part.

        A keyframe starts a segment and closes the one before, so neither it nor the last
        frames before it may wait in the kernel for later bytes: that would delay every
        segment (the packager must have muxed those frames, the ladder's encoders encoded
        them, before the segment can be cut). Shortly before the next keyframe is due the mark
        drops to half the size of the last video frame: every frame wakes us as soon as half
        of it is in, only AAC packets wait (for the next frame, one frame interval at most).
        Waking on every byte there cost a read per AAC packet (that window took ~25% of the
        CPU per stream at N = 10); half the last keyframe put the frames before it into the
        keyframe's read, which cost the source segments 20-50 ms of lag. A keyframe that is
        partly here wakes us once it is whole, also when it comes unannounced.
        """
        want = self._coalesce_bytes
        if self._video_dts >= self._key_due_dts:  # within 2 * coalesce_s of the next keyframe
            want = min(want, self._frame_bytes // 2)
        for type_id, left, head in partial_messages:
            if type_id == MessageType.VIDEO and left < want and may_be_keyframe(head):
                want = left
        want = max(1, min(want, MAX_LOW_WATER))
        return 1 if want < MIN_LOW_WATER else want
