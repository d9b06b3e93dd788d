"""Prometheus metrics of RTMP ingest (registered in the process's registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "streamd_rtmp_connections", "RTMP(S) connections open", registry=registry
        )
        self.sessions = Gauge(
            "streamd_rtmp_publish_sessions", "publish sessions in progress", registry=registry
        )
        self.bytes_in = Counter(
            "streamd_rtmp_media_bytes_in",
            "audio/video payload bytes received, per live in progress",
            ["live_id"],
            registry=registry,
        )
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
