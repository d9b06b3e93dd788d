"""Encoded frames out of an aiortc receiver, before its decoder.

aiortc has no public API for encoded frames: `RTCRtpReceiver` reassembles each frame in its
jitter buffer, rebases the RTP timestamp (`TimestampMapper`) and puts ``(codec, JitterFrame)``
on a queue that its decoder thread reads. The least fragile place to take frames is that queue:
`install` swaps in, on one receiver and before it starts, a queue that hands frames to the
caller instead of the decoder (whose thread then waits, idle, for the end marker, which still
passes), and an identity timestamp mapper so frames keep their RTP timestamps for the sender
reports (taken by wrapping the receiver's RTCP handler). Losses the jitter buffer gives up on
surface as the PLI it sends, wrapped too.

Everything touched is private to aiortc, so `install` checks each piece and raises
`UnsupportedAiortc` with what is missing, and the tested version range is pinned in
pyproject.toml (`TESTED_AIORTC`, checked by tests/ingest/whip/test_tap.py).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.rtp import RtcpSrPacket

log = logging.getLogger(__name__)

#: The aiortc releases this module was tested with, as (major, minor) bounds [low, high).
TESTED_AIORTC = ((1, 16), (1, 17))

_QUEUE = "_RTCRtpReceiver__decoder_queue"
_MAPPER = "_RTCRtpReceiver__timestamp_mapper"
_STARTED = "_RTCRtpReceiver__started"
_RTX = "_RTCRtpReceiver__rtx_ssrc"  # RTX SSRC -> media SSRC

#: (codec name as aiortc writes it, e.g. "H264" or "opus"; RTP timestamp; frame bytes)
OnFrame = Callable[[str, int, bytes], None]
#: (RTP timestamp, 64-bit NTP timestamp) of a sender report
OnReport = Callable[[int, int], None]


class UnsupportedAiortc(RuntimeError):
    """The installed aiortc does not have the internals the tap relies on."""


def aiortc_version() -> tuple[int, int]:
    major, minor, *_ = version("aiortc").split(".")
    return int(major), int(minor)


def within_tested_range(found: tuple[int, int] | None = None) -> bool:
    low, high = TESTED_AIORTC
    return low <= (found or aiortc_version()) < high


class _Diverter(queue.Queue[Any]):
    """The decoder queue: frames go to the tap; the end marker (None) to the decoder thread."""

    def __init__(self, on_frame: OnFrame) -> None:
        super().__init__()
        self._on_frame = on_frame

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None, block, timeout)
            return
        codec, frame = item
        try:
            self._on_frame(codec.name, frame.timestamp, frame.data)
        except Exception:  # raised into aiortc's transport, it would end the connection
            log.exception("whip: a received frame could not be handled; dropped")


class _RawTimestamps:
    """In place of aiortc's `TimestampMapper`: RTP timestamps as sent (the clock extends them)."""

    def map(self, timestamp: int) -> int:
        return timestamp


class ReceiverTap:
    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self.receiver = receiver
        self._send_pli: Callable[[int], Awaitable[None]] | None = None

    def install(self, on_frame: OnFrame, on_report: OnReport, on_loss: Callable[[], None]) -> None:
        """Take over the receiver's frames. Call before its transport connects."""
        receiver = self.receiver
        missing = [
            name for name in (_QUEUE, _MAPPER, _STARTED, "_handle_rtcp_packet", "_send_rtcp_pli")
            if not hasattr(receiver, name)
        ]  # fmt: skip
        if missing or not isinstance(getattr(receiver, _QUEUE), queue.Queue):
            raise UnsupportedAiortc(
                f"aiortc {version('aiortc')} lacks {', '.join(missing) or _QUEUE}; WHIP ingest "
                f"was tested with aiortc >= {TESTED_AIORTC[0]} and < {TESTED_AIORTC[1]}"
            )
        if getattr(receiver, _STARTED):
            raise UnsupportedAiortc("the receiver has already started: install the tap earlier")
        setattr(receiver, _QUEUE, _Diverter(on_frame))
        setattr(receiver, _MAPPER, _RawTimestamps())
        handle_rtcp = receiver._handle_rtcp_packet
        send_pli = receiver._send_rtcp_pli
        self._send_pli = send_pli

        async def rtcp(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                try:
                    on_report(info.rtp_timestamp, info.ntp_timestamp)
                except Exception:
                    log.exception("whip: a sender report could not be handled")
            await handle_rtcp(packet)

        async def pli_after_loss(media_ssrc: int) -> None:
            on_loss()
            await send_pli(media_ssrc)

        receiver._handle_rtcp_packet = rtcp  # type: ignore[method-assign]
        receiver._send_rtcp_pli = pli_after_loss  # type: ignore[method-assign]

    async def request_keyframe(self) -> bool:
        """Send a PLI to the sender of the receiver's media; False before media arrived."""
        # Not a retransmission stream's SSRC (aiortc lists those too): its sender ignores a PLI.
        rtx = getattr(self.receiver, _RTX, {})
        sources = [
            s.source for s in self.receiver.getSynchronizationSources() if s.source not in rtx
        ]
        if self._send_pli is None or not sources:
            return False
        await self._send_pli(sources[0])
        return True
