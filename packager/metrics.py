"""Prometheus metrics of the live packager (registered in the process's registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class PackagerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.pipelines = Gauge(
            "streamd_packager_pipelines",
            "live pipelines running (publishing or waiting for a reconnect)",
            registry=registry,
        )
        self.segments = Counter(
            "streamd_packager_segments",
            "media segments published, by rendition kind",
            ["kind"],
            registry=registry,
        )
        self.segment_bytes = Counter(
            "streamd_packager_segment_bytes",
            "bytes of media segments published, by rendition kind",
            ["kind"],
            registry=registry,
        )
        self.publish_seconds = Histogram(
            "streamd_packager_segment_publish_seconds",
            "from a segment's completion to its playlist being stored",
            ["kind"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.dropped_segments = Counter(
            "streamd_packager_dropped_segments",
            "segments dropped because storage could not keep up",
            registry=registry,
        )
        self.storage_errors = Counter(
            "streamd_packager_storage_errors",
            "failed storage operations (segments, playlists, deletions)",
            registry=registry,
        )
        self.long_keyframe_interval = Counter(
            "streamd_packager_long_keyframe_interval",
            "broadcasts whose keyframe interval exceeds the segment target (streamer told)",
            registry=registry,
        )
        self.reconnects = Counter(
            "streamd_packager_reconnects",
            "publishers that came back within the reconnect window",
            registry=registry,
        )
        self.recordings = Counter(
            "streamd_packager_recordings",
            "recordings finalised as VOD, by outcome (finished, recovered, empty, failed)",
            ["outcome"],
            registry=registry,
        )
