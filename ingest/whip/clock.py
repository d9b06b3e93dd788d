"""RTP timestamps of a WebRTC publish -> the packager's millisecond timeline, A/V in sync.

Each RTP stream counts in its own clock (90 kHz video, 48 kHz Opus) from a random start, so
the two tracks' timestamps say nothing about each other. RTCP sender reports do: each pairs an
RTP timestamp with the sender's wall clock (NTP), the same clock for every track of a sender.
A frame's time is ``ntp(report) + (rtp - rtp(report)) / clock``; the publish's origin is the
earliest first frame of any track, and every packet's milliseconds are counted from it.

Frames that arrive before their track's first report are held (bounded), then timed and let
go in order. A sender that sends no report within `REPORT_WAIT_S` is timed by arrival instead:
each track's first frame anchored at its arrival time (good to a few tens of milliseconds).
Later reports are not followed: re-anchoring on each would make timestamps jitter; the two
capture clocks of one sender do not drift apart measurably within a broadcast.

Sans-IO: the caller passes arrival times; nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

NTP_UNIX_OFFSET_S = 2_208_988_800
REPORT_WAIT_S = 1.5
MAX_HELD = 400  # frames per track waiting for a report: ~3 s of 60 fps video or of Opus


def ntp_to_seconds(ntp: int) -> float:
    """A 64-bit NTP timestamp (RTCP SR) as seconds since the Unix epoch."""
    return (ntp >> 32) - NTP_UNIX_OFFSET_S + (ntp & 0xFFFFFFFF) / 2**32


class RtpExtender:
    """32-bit RTP timestamps -> a monotonic-in-spirit 64-bit count (wraps and reordering)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: int | None = None

    def extend(self, timestamp: int) -> int:
        if self._last is None:
            self._last = timestamp
            return timestamp
        delta = (timestamp - self._last) & 0xFFFFFFFF
        if delta >= 1 << 31:  # behind the last one (reordered): a negative step
            delta -= 1 << 32
        self._last += delta
        return self._last


@dataclass(slots=True)
class _Track(Generic[T]):
    rate: int
    extender: RtpExtender = field(default_factory=RtpExtender)
    #: The first sender report: (extended RTP, sender's wall clock in seconds).
    report: tuple[int, float] | None = None
    #: (extended RTP, seconds on the arrival clock) that ties this track to the others.
    anchor: tuple[int, float] | None = None
    held: deque[tuple[int, float, T]] = field(default_factory=deque)

    def seconds(self, rtp: int) -> float:
        assert self.anchor is not None
        return self.anchor[1] + (rtp - self.anchor[0]) / self.rate


class PublishClock(Generic[T]):
    """Times the frames of one publish's tracks (named by the caller: "video", "audio").

    `frame` takes a frame's RTP timestamp, its arrival time and the caller's item, and returns
    the (track, milliseconds, item) triples now ready, in arrival order per track: one track's
    frame can release another's (its report came meanwhile). Every anchor is kept
    on the arrival clock: the sender's clock is mapped onto it once, by the first frame of the
    first track with a report, so tracks timed by reports and by arrival share one timeline."""

    def __init__(self, rates: dict[str, int]) -> None:
        self._tracks: dict[str, _Track[T]] = {name: _Track(rate) for name, rate in rates.items()}
        self._origin: float | None = None
        #: The sender's wall clock minus the arrival clock.
        self._delta: float | None = None
        self.dropped = 0

    @property
    def by_arrival(self) -> list[str]:
        """Tracks timed by arrival: their sender sent no report in time."""
        return [name for name, t in self._tracks.items() if t.anchor and t.report is None]

    def report(self, track: str, rtp: int, ntp: int) -> None:
        """An RTCP sender report of ``track``."""
        state = self._tracks[track]
        if state.report is None and state.anchor is None:
            state.report = (state.extender.extend(rtp), ntp_to_seconds(ntp))

    def frame(self, track: str, rtp: int, arrival: float, item: T) -> list[tuple[str, int, T]]:
        state = self._tracks[track]
        extended = state.extender.extend(rtp)
        if len(state.held) >= MAX_HELD:
            state.held.popleft()
            self.dropped += 1
        state.held.append((extended, arrival, item))
        self._anchor(arrival)
        return self._release()

    def _anchor(self, now: float) -> None:
        for state in self._tracks.values():
            if state.anchor is not None or not state.held:
                continue
            first_rtp, first_arrival, _ = state.held[0]
            if state.report is not None:
                report_rtp, report_s = state.report
                if self._delta is None:
                    sent = report_s + (first_rtp - report_rtp) / state.rate
                    self._delta = sent - first_arrival
                state.anchor = (report_rtp, report_s - self._delta)
            elif now - first_arrival >= REPORT_WAIT_S:
                state.anchor = (first_rtp, first_arrival)

    def _release(self) -> list[tuple[str, int, T]]:
        started = [t for t in self._tracks.values() if t.held or t.anchor is not None]
        if self._origin is None:
            # The origin is the earliest first frame of the tracks that have started: wait
            # until each of them is anchored.
            if any(t.anchor is None for t in started):
                return []
            self._origin = min(t.seconds(t.held[0][0]) for t in started if t.held)
        out: list[tuple[str, int, T]] = []
        for name, state in self._tracks.items():
            if state.anchor is None:
                continue
            while state.held:
                rtp, _, item = state.held.popleft()
                ms = max(0, round((state.seconds(rtp) - self._origin) * 1000))
                out.append((name, ms, item))
        return out
