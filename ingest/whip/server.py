"""WHIP ingest (RFC 9725): who may publish over WebRTC, and the publishers of this process.

The HTTP side (`web.whip`) hands each offer here with the bearer token; admission is the RTMP
one (`PublishGate.admit`: the stream key, the owner's role, one publisher per live across every
process and both protocols), and an admitted publish becomes the same `PublishSession` RTMP
makes, given to the packager through ``on_session``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer

from ingest.gate import Admitted, PublishGate, RejectReason, redact
from ingest.metrics import IngestMetrics
from ingest.session import PublishSession, Subscription
from ingest.whip.codecs import accept_h264_profiles
from ingest.whip.publisher import WhipPublisher
from ingest.whip.signaling import SignalingError

log = logging.getLogger(__name__)

#: How each refusal of the gate answers over HTTP.
_REJECTION_STATUS: dict[RejectReason, int] = {
    "wrong_app": 401,
    "bad_key": 401,
    "unknown_key": 401,
    "owner_inactive": 403,
    "owner_not_creator": 403,
    "owner_changed": 403,
    "already_publishing": 409,
    "database_error": 503,
}


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server, for the peer connection and the answer's Link headers."""

    urls: str
    username: str | None = None
    credential: str | None = None


@dataclass(slots=True)
class WhipLimits:
    max_publishers: int = 50
    keyframe_interval_s: float = 2.0
    ice_servers: tuple[IceServer, ...] = field(default_factory=tuple)


class WhipIngest:
    def __init__(
        self,
        gate: PublishGate,
        metrics: IngestMetrics,
        limits: WhipLimits,
        on_session: Callable[[PublishSession], None] | None = None,
        *,
        end_lives: bool = True,
    ) -> None:
        accept_h264_profiles()
        self.gate = gate
        self.metrics = metrics
        self.limits = limits
        self.on_session = on_session
        self.end_lives = end_lives
        self.publishers: dict[str, WhipPublisher] = {}  # by resource id
        self._admitting = 0
        self._releases: set[asyncio.Task[None]] = set()

    def _configuration(self) -> RTCConfiguration:
        return RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                for s in self.limits.ice_servers
            ]
        )

    async def publish(self, key: str, offer: str, peer: str) -> tuple[WhipPublisher, str]:
        """Admit and negotiate one publisher: (publisher, answer SDP), or `SignalingError`."""
        if len(self.publishers) + self._admitting >= self.limits.max_publishers:
            self._reject("at_capacity", peer, "at capacity")
            raise SignalingError(
                503, "at_capacity", "this server takes no more WHIP publishers now"
            )
        self._admitting += 1
        try:
            return await self._publish(key, offer, peer)
        finally:
            self._admitting -= 1

    async def _publish(self, key: str, offer: str, peer: str) -> tuple[WhipPublisher, str]:
        holder: list[WhipPublisher] = []

        def lost() -> None:
            if holder:
                self._track(holder[0].close("publish lock lost"))

        outcome = await self.gate.admit(self.gate.app_name, key, lost)
        if not isinstance(outcome, Admitted):
            self._reject(outcome.reason, peer, f"key {redact(key)}: {outcome.message}")
            raise SignalingError(_REJECTION_STATUS[outcome.reason], outcome.reason, outcome.message)
        session = PublishSession(outcome.live_id, "whip", peer)
        session.drop_hook = self._count_drop
        publisher = WhipPublisher(
            session, self._configuration(), self.limits.keyframe_interval_s, self._closed
        )
        holder.append(publisher)
        try:
            negotiated = await publisher.negotiate(offer)
        except BaseException as exc:
            try:
                await publisher.abort()
            finally:
                await self.gate.release(outcome.live_id, ended=False)
            if isinstance(exc, SignalingError):
                self._reject(exc.code, peer, exc.message)
            else:
                log.exception("whip %s: negotiation failed", peer)
            raise
        self.publishers[publisher.resource_id] = publisher
        self.metrics.sessions.inc()
        log.info(
            "live %d: WHIP publisher %s admitted (user %s, key %s, audio %s)",
            outcome.live_id, peer, outcome.username, redact(key), negotiated.audio,
        )  # fmt: skip
        if self.on_session is not None:
            self.on_session(session)
        return publisher, negotiated.answer

    def _closed(self, publisher: WhipPublisher) -> None:
        if self.publishers.pop(publisher.resource_id, None) is None:
            return
        self.metrics.sessions.dec()
        self._track(self.gate.release(publisher.session.live_id, ended=self.end_lives))

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task kept until it ends (close() waits for them)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def delete(self, resource_id: str) -> bool:
        """DELETE on the session's resource: the publisher is done."""
        publisher = self.publishers.get(resource_id)
        if publisher is None:
            return False
        await publisher.close("ended by the publisher (DELETE)")
        return True

    def stop_live(self, live_id: int, reason: str) -> bool:
        """End a live's WHIP publish from the server side (owner or admin pressed stop)."""
        for publisher in list(self.publishers.values()):
            if publisher.session.live_id == live_id:
                self._track(publisher.close(f"stopped: {reason}"))
                return True
        return False

    async def close(self) -> None:
        await asyncio.gather(
            *(p.close("server shutting down") for p in list(self.publishers.values())),
            return_exceptions=True,
        )
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)

    def _count_drop(self, sub: Subscription) -> None:
        self.metrics.consumer_drops.labels(sub.name).inc()

    def _reject(self, reason: str, peer: str, detail: str) -> None:
        self.metrics.rejections.labels(reason).inc()
        log.warning("whip %s refused (%s): %s", peer, reason, detail)


__all__ = ["IceServer", "WhipIngest", "WhipLimits"]
