"""One WHEP viewer: its peer connection, and two tracks that hand aiortc's senders the relay's
encoded frames (aiortc packetizes an `av.Packet` as it is: nothing is encoded here)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidAccessError, OperationError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from ingest.whip.codecs import keep_codecs
from ingest.whip.signaling import SignalingError
from packager.whep.relay import LiveRelay, OutFrame, ViewerFeed

log = logging.getLogger(__name__)

MS = Fraction(1, 1000)
CONNECT_TIMEOUT_S = 15.0


class RelayTrack(MediaStreamTrack):
    """A track whose "frames" are the relay's encoded packets, timed in milliseconds."""

    def __init__(self, kind: str, frames: asyncio.Queue[OutFrame | None]) -> None:
        super().__init__()
        self.kind = kind
        self._frames = frames

    async def recv(self) -> av.Packet[Any]:
        frame = await self._frames.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = frame.ms
        packet.time_base = MS
        return packet


class WhepViewer:
    def __init__(
        self, relay: LiveRelay, configuration: RTCConfiguration, peer: str,
        on_closed: Callable[[WhepViewer], None],
    ) -> None:  # fmt: skip
        self.resource_id = secrets.token_urlsafe(18)
        self.etag = f'"{secrets.token_hex(8)}"'
        self.relay = relay
        self.peer = peer
        self.address = peer.rsplit(":", 1)[0]
        self.feed = ViewerFeed()
        self.pc = RTCPeerConnection(configuration)
        self._on_closed = on_closed
        self._tasks: set[asyncio.Task[None]] = set()
        self.started = time.monotonic()
        self.answer = ""
        self.closed = False

    async def negotiate(self, offer: str) -> str:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        except OperationError as exc:
            raise SignalingError(422, "unsupported_codec", f"{exc}: play H.264 and Opus") from None
        except (ValueError, KeyError, IndexError, TypeError, InvalidAccessError) as exc:
            raise SignalingError(400, "bad_sdp", f"the offer is not valid SDP: {exc}") from None
        video = audio = False
        profile = self.relay.video.profile_idc if self.relay.video is not None else 0x42
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video" and not video and _prefer_h264(transceiver, profile):
                self._send(transceiver, RelayTrack("video", self.feed.video))
                video = True
            elif transceiver.kind == "audio" and not audio and _prefer(transceiver, "opus"):
                self._send(transceiver, RelayTrack("audio", self.feed.audio))
                audio = True
            else:
                transceiver.direction = "inactive"
        if not video:
            raise SignalingError(
                422, "unsupported_codec", "the offer has no H.264 video to receive"
            )
        self.pc.on("connectionstatechange", self._on_state)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)  # gathers every candidate first
        if self.closed:
            raise SignalingError(503, "closed", "the live ended while the viewer was set up")
        self.relay.add(self.feed)
        self._spawn(self._watch())
        return str(self.pc.localDescription.sdp)

    def _send(self, transceiver: RTCRtpTransceiver, track: RelayTrack) -> None:
        transceiver.direction = "sendonly"
        transceiver.sender.replaceTrack(track)
        if track.kind == "video":
            # A browser's PLI (a join, a loss it could not repair) becomes a request upstream:
            # nothing here can make a keyframe (aiortc's own handler asks its encoder).
            transceiver.sender._send_keyframe = self._keyframe_wanted  # type: ignore[method-assign]

    def _keyframe_wanted(self) -> None:
        self.feed.waiting_keyframe = True
        self.relay.request_keyframe()

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            log.info("live %d: WHEP viewer %s connected", self.relay.live_id, self.peer)
        elif state in ("failed", "closed"):
            self._spawn(self.close(f"connection {state}"))

    async def _watch(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if self.pc.connectionState != "connected":
            await self.close("no connection (ICE or DTLS failed)")

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        log.info("live %d: WHEP viewer %s left: %s", self.relay.live_id, self.peer, reason)
        self.relay.remove(self.feed)
        self._on_closed(self)
        await self.pc.close()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    async def abort(self) -> None:
        self.closed = True
        self.relay.remove(self.feed)
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _prefer(transceiver: RTCRtpTransceiver, name: str) -> bool:
    """Answer with ``name`` only (and its retransmission format); False when not offered."""
    kept = [c for c in transceiver._codecs if c.name.lower() == name.lower()]
    return keep_codecs(transceiver, kept[:1])


def _prefer_h264(transceiver: RTCRtpTransceiver, profile_idc: int) -> bool:
    """The offered H.264 (packetization-mode 1) whose profile is the source's, else the first:
    the bytes pass through, so the answer names what they are where the browser lets it."""
    offered = [
        c for c in transceiver._codecs
        if c.name.lower() == "h264" and str(c.parameters.get("packetization-mode")) == "1"
    ]  # fmt: skip
    same = [c for c in offered if str(c.parameters.get("profile-level-id", ""))[:2].lower()
            == f"{profile_idc:02x}"]  # fmt: skip
    return keep_codecs(transceiver, (same or offered)[:1])
