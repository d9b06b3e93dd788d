"""asyncio glue around the sans-IO RTMP connection: sockets, timers, admission, sessions.

One :class:`RtmpProtocol` per TCP (or TLS) connection feeds bytes to an
:class:`~ingest.rtmp.RtmpServerConnection`, acts on its events, and writes its replies. The
only awaits are the database calls of admission; while one runs, reading is paused so a client
cannot queue unbounded input. A protocol error, a timeout or an unsupported codec closes that
connection alone, with one log line and a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from ingest.compiled import PURE_PYTHON_ENV
from ingest.flv import FlvError, UnsupportedCodec, UnsupportedFeature
from ingest.flv import speedups as flv_speedups
from ingest.gate import Admitted, PublishGate, redact
from ingest.intake import MediaIntake
from ingest.metrics import IngestMetrics
from ingest.pacing import MAX_LOW_WATER, ReadPacing
from ingest.rtmp import (
    AudioMessage,
    CloseStream,
    ConnectionClosed,
    ConnectRequest,
    DeleteStream,
    Event,
    FCUnpublish,
    MetaData,
    PublishRequest,
    RtmpProtocolError,
    RtmpServerConnection,
    UnknownCommand,
    VideoMessage,
    speedups,
)
from ingest.session import PublishSession, Subscription
from media.types import AudioConfig, MediaPacket, VideoConfig

log = logging.getLogger(__name__)

TICK_S = 1.0
# Read coalescing (ingest.pacing): at most this much added latency in the middle of a keyframe
# interval, none for a keyframe. With the transcoded ladder downstream, frames must come
# evenly: its encoders queue bursts (100 ms of coalescing added 60-80 ms to the rungs' segment
# lag), so the wiring asks for less there; so it does for LL-HLS, whose parts (1/3 s) are
# listed as soon as the frame after them arrives.
COALESCE_S = 0.1
LADDER_COALESCE_S = 0.025
READ_SIZE = MAX_LOW_WATER  # room offered to each socket read


@dataclass(frozen=True, slots=True)
class RtmpLimits:
    max_connections: int = 1000
    handshake_timeout: float = 10.0  # from accept until publish starts
    idle_timeout: float = 30.0  # no byte at all from a publishing client


class RtmpServer:
    """Listens for RTMP(S), admits publishers through the gate, owns the live sessions."""

    def __init__(
        self,
        gate: PublishGate,
        metrics: IngestMetrics,
        limits: RtmpLimits,
        on_session: Callable[[PublishSession], None] | None = None,
        *,
        end_lives: bool = True,
        coalesce_s: float = COALESCE_S,
    ) -> None:
        """``end_lives``: mark a live ended when its publisher leaves. False when a consumer
        (the packager, with its reconnect window) decides when a live is over.
        ``coalesce_s``: read coalescing, see COALESCE_S."""
        self.gate = gate
        self.end_lives = end_lives
        self.coalesce_s = coalesce_s
        self.metrics = metrics
        self.limits = limits
        self.on_session = on_session
        self.sessions: dict[int, PublishSession] = {}
        self.connections: set[RtmpProtocol] = set()
        self._servers: list[asyncio.Server] = []
        metrics.bytes_in.source = self.sessions.values

    async def listen(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: RtmpProtocol(self), host, port, ssl=ssl_context, reuse_address=True
        )
        self._servers.append(server)
        if not (speedups.COMPILED and flv_speedups.COMPILED):
            log.warning(
                "rtmp: using the Python chunk decoder and FLV parsers (%s); reinstall with a "
                "C compiler for the compiled ones, which need less CPU per stream",
                "forced by " + PURE_PYTHON_ENV
                if speedups.compiled_decoder() and flv_speedups.compiled_parsers()
                else "the compiled ones were not built",
            )
        return server

    def ports(self) -> list[int]:
        return [int(s.getsockname()[1]) for srv in self._servers for s in srv.sockets]

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        open_connections = list(self.connections)  # connection_lost empties the set meanwhile
        for conn in open_connections:
            conn.abort("server shutting down")
        for server in self._servers:
            await server.wait_closed()
        # Let the release tasks of the aborted connections finish their database writes.
        pending = [c.release_task for c in open_connections if c.release_task is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def stop_live(self, live_id: int, reason: str) -> bool:
        """End a live's publish from the server side (owner or admin pressed stop)."""
        for conn in self.connections:
            if conn.session is not None and conn.session.live_id == live_id:
                conn.stop_publish(reason)
                return True
        return False


class RtmpProtocol(asyncio.BufferedProtocol):
    def __init__(self, server: RtmpServer) -> None:
        self.server = server
        self.conn = RtmpServerConnection()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.session: PublishSession | None = None
        self.release_task: asyncio.Task[None] | None = None
        self._app = ""
        self._key_in_app = ""
        self._stream_id = 0
        self._admitting = False
        self._write_paused = False
        self._closed = False
        self._pacing = ReadPacing(server.coalesce_s, time.monotonic(), TICK_S)
        self._low_water = 1  # SO_RCVLOWAT now
        self._sock: socket.socket | None = None  # for SO_RCVLOWAT, once asked for
        self._timer: asyncio.TimerHandle | None = None
        self._intake = MediaIntake()
        self._batch: list[MediaPacket] = []  # parsed, not yet delivered (see _deliver)

    # --- asyncio callbacks ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if len(self.server.connections) >= self.server.limits.max_connections:
            self._reject("too_many_connections", "connection limit reached")
            self.transport.abort()
            return
        self.server.connections.add(self)
        self.server.metrics.connections.inc()
        self._schedule(self.server.limits.handshake_timeout, self._on_handshake_timeout)

    def get_buffer(self, sizehint: int) -> memoryview:
        # The socket reads straight into the chunk decoder's input: no bytes object per read
        # and no copy into the decoder (memory traffic is most of a read's cost here).
        return self.conn.get_buffer(max(sizehint, READ_SIZE))

    def buffer_updated(self, nbytes: int) -> None:
        self.conn.buffer_updated(nbytes)
        self._after_read()

    def data_received(self, data: bytes) -> None:
        """The same as a read of ``data`` (for callers holding bytes)."""
        self.conn.receive_data(data)
        self._after_read()

    def _after_read(self) -> None:
        self._pump()
        if self._pacing.coalescing:  # checked after each read: it changes around keyframes
            self._apply_pacing()

    def pause_writing(self) -> None:
        # A client that does not read our acks and statuses must not make us buffer for it:
        # stop reading its input until our output drains.
        self._write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.transport is not None and not self._admitting and not self._closed:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._pump()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self in self.server.connections:
            self.server.connections.discard(self)
            self.server.metrics.connections.dec()
        self._closed = True
        self._end_session()

    # --- the event pump ---

    def _pump(self) -> None:
        conn = self.conn
        try:
            while not self._admitting and not self._closed:
                event = conn.next_event()
                if event is None:
                    break
                # Media first, without a call of _handle: nearly every event is one.
                kind = type(event)
                if kind is VideoMessage or kind is AudioMessage:
                    self._on_media(cast(VideoMessage | AudioMessage, event))
                else:
                    self._handle(event)
        except RtmpProtocolError as exc:
            self._deliver()
            self._reject(exc.reason, str(exc))
            self._flush()
            self.close()
            return
        self._deliver()
        self._flush()

    def _deliver(self) -> None:
        """Hand the packets parsed so far to the session's consumers, in one batch: every
        subscription gets them in one step instead of one call per packet. Called at the end
        of each pump (consumers run only after it anyway), before a new codec configuration
        and before the session ends, so the order of packets and configs is kept."""
        if self._batch:
            batch, self._batch = self._batch, []
            if self.session is not None:
                self.session.feed_batch(batch)

    def _handle(self, event: Event) -> None:
        """Every event but media (_pump dispatches those itself)."""
        if isinstance(event, ConnectRequest):
            # "rtmp://HOST/live/KEY" with an empty key field: some clients send the key as part
            # of the app; keep it as the publish name to use when the publish name is empty.
            app, _, self._key_in_app = event.app.strip("/").partition("/")
            self._app = app
            if self._app != self.server.gate.app_name:
                self.conn.reject_connect(f"unknown application; use /{self.server.gate.app_name}")
                self._reject("wrong_app", f"app {event.app[:64]!r}")
                self._close_after_flush()
            else:
                self.conn.accept_connect()
        elif isinstance(event, PublishRequest):
            self._start_admission(event)
        elif isinstance(event, MetaData):
            if self.session is not None:
                self.session.metadata = dict(event.metadata)
        elif isinstance(event, CloseStream | DeleteStream | FCUnpublish):
            if self.session is not None and (
                not isinstance(event, CloseStream | DeleteStream) or event.was_publishing
            ):
                log.info(
                    "live %d: publisher %s stopped publishing", self.session.live_id, self.peer
                )
                self._end_session()
        elif isinstance(event, UnknownCommand):
            if event.transaction_id:
                self.conn.reject_command(event.transaction_id, f"{event.name[:64]} not supported")
        elif isinstance(event, ConnectionClosed):
            self.close()

    def _on_media(self, event: VideoMessage | AudioMessage) -> None:
        session = self.session
        if session is None:
            return
        video = type(event) is VideoMessage
        item: MediaPacket | VideoConfig | AudioConfig | None
        try:
            if video:
                item = self._intake.video(event.payload, event.timestamp)
            else:
                item = self._intake.audio(event.payload, event.timestamp)
        except (UnsupportedCodec, UnsupportedFeature) as exc:
            self._refuse_media(str(exc))
            return
        except FlvError as exc:
            kind = "video" if video else "audio"
            log.warning("live %d: skipped a malformed %s tag: %s", session.live_id, kind, exc)
            return
        if isinstance(item, MediaPacket):
            if video:
                self._pacing.on_video(item)
            self._batch.append(item)
        elif item is not None:
            self._deliver()  # the packets before a new config go out under the old one
            if isinstance(item, VideoConfig):
                session.set_video_config(item)
            else:
                session.set_audio_config(item)

    def _refuse_media(self, what: str) -> None:
        assert self.session is not None
        log.warning("live %d: refusing publisher %s: %s", self.session.live_id, self.peer, what)
        self.server.metrics.rejections.labels("unsupported_codec").inc()
        self.conn.fail_publish(self._stream_id, f"Refused: {what}; use H.264/HEVC/AV1 and AAC")
        self._end_session()
        self._close_after_flush()

    # --- admission (the one await) ---

    def _start_admission(self, event: PublishRequest) -> None:
        if self.session is not None:
            self.conn.reject_publish(event.stream_id, "NetStream.Publish.BadName", "one publish")
            return
        self._admitting = True
        assert self.transport is not None
        self.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._admit(event))
        task.add_done_callback(_log_crash)

    async def _admit(self, event: PublishRequest) -> None:
        key = event.name or self._key_in_app
        outcome = await self.server.gate.admit(self._app, key, self._lost_lock)
        if self._closed:  # the client left while we were asking
            if isinstance(outcome, Admitted):
                await self.server.gate.release(outcome.live_id)
            return
        if isinstance(outcome, Admitted):
            self._stream_id = event.stream_id
            self.session = PublishSession(outcome.live_id, self._app, self.peer)
            self.session.drop_hook = self._count_drop
            self.server.sessions[outcome.live_id] = self.session
            self.server.metrics.sessions.inc()
            self.conn.accept_publish(event.stream_id)
            log.info(
                "live %d: %s started publishing (user %s, key %s)",
                outcome.live_id, self.peer, outcome.username, redact(key),
            )  # fmt: skip
            self._schedule(TICK_S, self._on_tick)
            if self.server.on_session is not None:
                self.server.on_session(self.session)
        else:
            code = {
                "already_publishing": "NetStream.Publish.BadName",
                "database_error": "NetStream.Publish.Failed",
            }.get(outcome.reason, "NetStream.Publish.Denied")
            self.conn.reject_publish(event.stream_id, code, outcome.message)
            self._reject(outcome.reason, f"key {redact(key)}: {outcome.message}")
            self._close_after_flush()
        self._admitting = False
        if self.transport is not None and not self._closed:
            if not self._write_paused:
                self.transport.resume_reading()
            self._pump()

    def _lost_lock(self) -> None:
        self.stop_publish("publish lock lost")

    def _count_drop(self, sub: Subscription) -> None:
        self.server.metrics.consumer_drops.labels(sub.name).inc()

    # --- ending ---

    def stop_publish(self, reason: str) -> None:
        if self.session is not None and not self._closed:
            self.conn.end_publish(self._stream_id, f"Stopped by the server: {reason}.")
            log.info("live %d: stopping publisher %s: %s", self.session.live_id, self.peer, reason)
            self._end_session()
            self._close_after_flush()

    def _end_session(self) -> None:
        self._deliver()
        session, self.session = self.session, None
        if session is None:
            return
        session.end()
        if self.server.sessions.get(session.live_id) is session:
            del self.server.sessions[session.live_id]
        self.server.metrics.sessions.dec()
        self.release_task = asyncio.get_running_loop().create_task(
            self.server.gate.release(session.live_id, ended=self.server.end_lives)
        )
        self.release_task.add_done_callback(_log_crash)

    def _reject(self, reason: str, detail: str) -> None:
        self.server.metrics.rejections.labels(reason).inc()
        log.warning("rtmp %s refused (%s): %s", self.peer, reason, detail)

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close_after_flush(self) -> None:
        self._flush()
        self.close()

    def close(self) -> None:
        if not self._closed and self.transport is not None:
            self._closed = True
            self.transport.close()  # flushes what was written, then closes

    def abort(self, reason: str) -> None:
        if self.session is not None:
            self.stop_publish(reason)
        if self.transport is not None:
            self.transport.abort()

    # --- timers (clock reads stay here, out of the protocol) ---

    def _schedule(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, callback)

    def _on_handshake_timeout(self) -> None:
        if self.session is None and not self._admitting and not self._closed:
            self._reject("handshake_timeout", "did not start publishing in time")
            self.abort("handshake timeout")

    def _on_tick(self) -> None:
        """Once a second while publishing: the idle check and read coalescing."""
        if self._closed:
            return
        idle = self._pacing.tick(time.monotonic(), self.conn.bytes_received)
        if idle >= self.server.limits.idle_timeout:
            self._reject("idle_timeout", f"no data for {idle:.0f}s")
            self.abort("idle timeout")
            return
        self._apply_pacing()
        self._schedule(TICK_S, self._on_tick)

    def _apply_pacing(self) -> None:
        """Ask the kernel to wake us only once the bytes ingest.pacing wants now are buffered
        (SO_RCVLOWAT)."""
        nbytes = self._pacing.low_water(self.conn.chunk_decoder.partial_messages())
        if nbytes == self._low_water or self.transport is None:
            return
        if self._sock is None:
            self._sock = self.transport.get_extra_info("socket")
        sock = self._sock
        if sock is None or not hasattr(socket, "SO_RCVLOWAT"):
            return
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
            self._low_water = nbytes


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("rtmp task failed", exc_info=exc)
