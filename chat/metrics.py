"""The chat hub on ``/metrics``: read from the hub at scrape time, nothing counted twice."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chat.hub import Hub

_COUNTERS = {
    "slow_disconnects": "WebSocket clients disconnected for not reading their events",
    "reconnects": "times the LISTEN connection was lost and made again",
    "bad_notifications": "NOTIFY payloads on the chat channel that could not be read",
}


class HubCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        counts = self.hub.local_counts()
        yield GaugeMetricFamily(
            "streamd_chat_lives",
            "lives with a chat client or a heartbeating player in this process",
            value=sum(1 for n in counts.values() if n),
        )
        yield GaugeMetricFamily(
            "streamd_chat_viewers",
            "viewers counted by this process (WebSocket clients and HLS heartbeats)",
            value=sum(counts.values()),
        )
        yield GaugeMetricFamily(
            "streamd_chat_listen_connected",
            "1 while the LISTEN connection is up and caught up",
            value=1 if self.hub.connected.is_set() else 0,
        )
        for name, help_text in _COUNTERS.items():
            yield CounterMetricFamily(
                f"streamd_chat_{name}", help_text, value=self.hub.stats.get(name, 0)
            )
