"""Prometheus metrics of the transcoded ladder, and the sliding real-time-factor window.

One `LadderMetrics` serves every ladder of the process (labels are rung names, never live
ids, so the series count stays fixed). Gauges that several ladders share are moved with
inc/dec, so they read as totals; the real-time factor is set by whichever ladder produced last
(with one live per process, the normal case for an ingest node under load, it is exact).
"""

from __future__ import annotations

import collections
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge


class LadderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.realtime_factor = Gauge(
            "streamd_ladder_realtime_factor",
            "media seconds a rung encoded per wall-clock second, over the last few seconds",
            ["rung"],
            registry=registry,
        )
        self.rungs_active = Gauge(
            "streamd_ladder_rungs_active",
            "ladders currently encoding this rung",
            ["rung"],
            registry=registry,
        )
        self.rungs_shed = Counter(
            "streamd_ladder_rungs_shed",
            "rungs stopped because the machine could not keep up",
            ["rung"],
            registry=registry,
        )
        self.rungs_restored = Counter(
            "streamd_ladder_rungs_restored",
            "shed rungs started again once load allowed",
            ["rung"],
            registry=registry,
        )
        self.frames_dropped = Counter(
            "streamd_ladder_frames_dropped",
            "source video packets or frames the ladder did not encode, by reason",
            ["reason"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "streamd_ladder_queue_depth",
            "source packets waiting to be decoded, all ladders",
            registry=registry,
        )


class RealtimeWindow:
    """Media seconds per wall second over the last `window_s` seconds of output.

    Fed by one rung's worker thread after each encoded packet; read from any thread.
    """

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._lock = threading.Lock()

    def add(self, media_ms: int, now: float | None = None) -> float:
        wall = time.monotonic() if now is None else now
        with self._lock:
            self._samples.append((wall, media_ms))
            while len(self._samples) > 2 and wall - self._samples[1][0] >= self.window_s:
                self._samples.popleft()
            return self._factor()

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()

    @property
    def factor(self) -> float:
        with self._lock:
            return self._factor()

    def _factor(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (wall0, media0), (wall1, media1) = self._samples[0], self._samples[-1]
        if wall1 <= wall0:
            return 0.0
        return (media1 - media0) / 1000 / (wall1 - wall0)
