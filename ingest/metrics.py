"""Prometheus metrics of RTMP ingest (registered in the process's registry)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class _HasBytesIn(Protocol):
    live_id: int
    bytes_in: int


class SessionBytesCollector(Collector):
    """Bytes in per live, read from the sessions at scrape time: counting in the session is one
    integer addition per packet, where a labelled Counter costs a dict lookup and a lock."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[_HasBytesIn]] = tuple

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "streamd_rtmp_media_bytes_in",
            "audio/video payload bytes received, per live in progress",
            labels=["live_id"],
        )
        for session in self.source():
            family.add_metric([str(session.live_id)], session.bytes_in)
        yield family


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "streamd_rtmp_connections", "RTMP(S) connections open", registry=registry
        )
        self.sessions = Gauge(
            "streamd_rtmp_publish_sessions", "publish sessions in progress", registry=registry
        )
        self.bytes_in = SessionBytesCollector()
        registry.register(self.bytes_in)
        self.rejections = Counter(
            "streamd_rtmp_rejections",
            "connections or publishes refused, by reason",
            ["reason"],
            registry=registry,
        )
        self.consumer_drops = Counter(
            "streamd_ingest_consumer_drops",
            "packets dropped because a consumer of a publish session was too slow",
            ["consumer"],
            registry=registry,
        )
