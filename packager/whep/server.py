"""WHEP playback of this process's lives: who may play (the live is on air here, its codec
plays in a browser, capacity), one `LiveRelay` per live with viewers, and their counts.

Only the process holding a live's publisher can relay it (the frames are in its memory): a
``POST /whep/{live}`` reaching another process is answered 404, like a live not on air. The
viewer is counted by the process holding its peer connection, reported with the chat's counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer

from chat.viewers import socket_viewers, viewer_key
from ingest.session import PublishSession
from ingest.whip.codecs import accept_h264_profiles
from ingest.whip.server import IceServer
from ingest.whip.signaling import SignalingError
from packager.whep.relay import LiveRelay
from packager.whep.viewer import WhepViewer

log = logging.getLogger(__name__)

#: How long the first viewer of a live waits for the relay to see what the stream is.
PROBE_TIMEOUT_S = 3.0
#: A relay whose last viewer left is kept this long for the next one (a reload, a retry).
LINGER_S = 10.0


@dataclass(slots=True)
class WhepLimits:
    max_viewers: int = 200
    #: How long viewers wait for the publisher to come back before they are let go.
    reconnect_window_s: float = 30.0
    ice_servers: tuple[IceServer, ...] = field(default_factory=tuple)
    viewers_per_address: int = 4  # counted toward the viewer count (chat.viewers)


class WhepServer:
    def __init__(self, limits: WhepLimits) -> None:
        accept_h264_profiles()
        self.limits = limits
        self.sessions: dict[int, PublishSession] = {}  # the live's latest publish session
        self.relays: dict[int, LiveRelay] = {}
        self.viewers: dict[str, WhepViewer] = {}  # by resource id
        self._negotiating = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- sources (the packager's on_session, for RTMP and WHIP alike) ---

    def on_session(self, session: PublishSession) -> None:
        self.sessions[session.live_id] = session
        relay = self.relays.get(session.live_id)
        if relay is not None:
            relay.attach(session)
        self._spawn(self._ended(session))

    async def _ended(self, session: PublishSession) -> None:
        await session.wait_ended()
        await asyncio.sleep(self.limits.reconnect_window_s + 5)
        if self.sessions.get(session.live_id) is session:  # no publisher came back
            del self.sessions[session.live_id]
            await self._close_relay(session.live_id, "the live ended")

    # --- viewers ---

    async def play(self, live_id: int, offer: str, peer: str) -> WhepViewer:
        """Set up one viewer: its answer is ``viewer.answer``; `SignalingError` on refusal."""
        if len(self.viewers) + self._negotiating >= self.limits.max_viewers:
            raise SignalingError(503, "at_capacity", "this server takes no more WebRTC viewers now")
        session = self.sessions.get(live_id)
        if session is None:
            raise SignalingError(404, "not_live", "this live is not on air on this server; use HLS")
        relay = self.relays.get(live_id)
        if relay is None:
            relay = self.relays[live_id] = LiveRelay(live_id)
            relay.attach(session)
        viewer = WhepViewer(relay, self._configuration(), peer, self._closed)
        self._negotiating += 1
        relay.joining += 1
        try:
            await self._check(relay)
            viewer.answer = await viewer.negotiate(offer)
        except BaseException:
            await viewer.abort()
            raise
        finally:
            self._negotiating -= 1
            relay.joining -= 1
            self._drop_idle_relay(live_id)  # one that never got a viewer is let go too
        self.viewers[viewer.resource_id] = viewer
        log.info("live %d: WHEP viewer %s admitted (%d here)", live_id, peer, len(relay.viewers))
        return viewer

    @staticmethod
    async def _check(relay: LiveRelay) -> None:
        """Refuse a stream WebRTC cannot carry, once the relay has seen some of it."""
        if not relay.probed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(relay.probed.wait(), PROBE_TIMEOUT_S)
        if relay.unplayable is not None:
            raise SignalingError(422, "unsupported_codec", f"{relay.unplayable}; use HLS")
        if relay.reorders:
            raise SignalingError(422, "b_frames", "the stream has B-frames, which WebRTC players "
                            "render badly; use HLS (the streamer can set bframes=0)")  # fmt: skip

    def _closed(self, viewer: WhepViewer) -> None:
        self.viewers.pop(viewer.resource_id, None)
        self._drop_idle_relay(viewer.relay.live_id)

    def _drop_idle_relay(self, live_id: int) -> None:
        relay = self.relays.get(live_id)
        if relay is not None and not relay.viewers and not relay.joining:
            self._spawn(self._linger(live_id))

    async def _linger(self, live_id: int) -> None:
        await asyncio.sleep(LINGER_S)
        await self._close_relay(live_id, "no viewers left")

    async def _close_relay(self, live_id: int, reason: str) -> None:
        relay = self.relays.get(live_id)
        if relay is None or (reason == "no viewers left" and (relay.viewers or relay.joining)):
            return
        del self.relays[live_id]
        for viewer in [v for v in self.viewers.values() if v.relay is relay]:
            await viewer.close(reason)
        await relay.close()

    async def delete(self, resource_id: str) -> bool:
        viewer = self.viewers.get(resource_id)
        if viewer is None:
            return False
        await viewer.close("ended by the viewer (DELETE)")
        return True

    def counts(self) -> dict[int, int]:
        """Viewers per live on this process, as the chat's counts take them."""
        keys: dict[int, list[str]] = {}
        for viewer in self.viewers.values():
            keys.setdefault(viewer.relay.live_id, []).append(viewer_key(None, viewer.address))
        per_address = self.limits.viewers_per_address
        return {live: socket_viewers(k, per_address) for live, k in keys.items()}

    def _configuration(self) -> RTCConfiguration:
        return RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                for s in self.limits.ice_servers
            ]
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for live_id in list(self.relays):
            with contextlib.suppress(Exception):
                await self._close_relay(live_id, "server shutting down")
