"""``streamd serve``: one event loop running the HTTP app and the RTMP(S) listeners."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from config.settings import ConfigError, Settings
from db.lives import LIVE_CONTROL_CHANNEL
from ingest.control import LiveControl
from ingest.gate import PublishGate
from ingest.metrics import IngestMetrics
from ingest.server import COALESCE_S, LADDER_COALESCE_S, RtmpLimits, RtmpServer
from ingest.session import PublishSession
from ingest.whip.server import IceServer, WhipIngest, WhipLimits
from packager.hls.low_latency import LiveIndex
from packager.storage.base import Storage, known_object_headers
from packager.whep.server import WhepLimits, WhepServer
from streamd.media import build_packager, build_storage
from streamd.resources import chat_hub, database_pools
from streamd.worker import running_worker
from web.app import create_app
from web.hls import hls_routes
from web.hls_origin import HlsOrigin
from web.playback import PlaybackGuard
from web.whep import whep_routes
from web.whip import whip_routes
from web.ws_protocol import FrameWritingProtocol

log = logging.getLogger("streamd")

# uvicorn's WebSocket settings for chat. uvicorn's sans-IO websockets protocol is the fastest of
# its three for fan-out (bench/chat_fanout.py); web.ws_protocol adds the extension through which
# a room writes each event's frame, serialised once, to every socket. No per-message deflate: it
# would compress every event once per client.
WEBSOCKET_OPTIONS: dict[str, Any] = {
    "ws": FrameWritingProtocol,
    "ws_max_size": 64 * 1024,  # a chat event is at most 8 KiB
    "ws_per_message_deflate": False,
}


async def run_server(settings: Settings, database_url: str) -> None:
    """Serve HTTP and RTMP until SIGINT/SIGTERM, then close everything in reverse order."""
    registry = CollectorRegistry()
    async with database_pools(settings, database_url) as db:
        gate = PublishGate(db.primary, database_url, settings.rtmp_app)
        await gate.open()
        storage = build_storage(settings, registry)
        packager = build_packager(settings, db.primary, registry, storage)
        await packager.recover()  # finish recordings a crash left open, before new publishes
        whep = build_whep(settings)

        def on_session(session: PublishSession) -> None:
            packager.on_session(session)
            whep.on_session(session)

        rtmp = RtmpServer(
            gate,
            IngestMetrics(registry),
            RtmpLimits(
                max_connections=settings.rtmp_max_connections,
                handshake_timeout=settings.rtmp_handshake_timeout,
                idle_timeout=settings.rtmp_idle_timeout,
            ),
            on_session=on_session,
            # The packager ends a live once its reconnect window has passed.
            end_lives=False,
            coalesce_s=(
                LADDER_COALESCE_S if settings.hls_ladder or settings.hls_parts else COALESCE_S
            ),
        )
        whip = build_whip(settings, gate, rtmp.metrics, on_session)

        def stop_live(live_id: int, reason: str) -> bool:
            return rtmp.stop_live(live_id, reason) or whip.stop_live(live_id, reason)

        # "Stop this live" from any process (API, admin) reaches the one holding the publisher,
        # through the chat hub's LISTEN connection (one per process, outside the pool).
        control = {LIVE_CONTROL_CHANNEL: LiveControl(stop_live).on_notify}
        try:
            async with chat_hub(settings, db, control) as hub:
                hub.viewer_sources.append(whep.counts)  # WebRTC viewers count as viewers
                guard = PlaybackGuard()
                await rtmp.listen(settings.rtmp_host, settings.rtmp_port)
                if settings.rtmps_port is not None:
                    await rtmp.listen(
                        settings.rtmp_host, settings.rtmps_port, _tls_context(settings)
                    )
                app = create_app(
                    settings,
                    db,
                    hub,
                    registry=registry,
                    stop_live=stop_live,
                    extra_routes=[
                        *(whip_routes(whip) if settings.whip_max_publishers > 0 else []),
                        *(whep_routes(whep, guard) if settings.whep_max_viewers > 0 else []),
                        *hls_routes_for(settings, storage, guard),
                    ],
                    extra_middleware=[hls_origin_for(settings, packager.live_index, guard)],
                    storage=storage,
                )
                # VOD transcoding in this process unless STREAMD_VOD_WORKERS=0 (web-only).
                async with running_worker(
                    settings, database_url, db.primary, storage, settings.vod_workers
                ):
                    await _serve_http(settings, app)
        finally:
            await rtmp.close()
            await whip.close()
            await whep.close()
            await packager.close()
            await gate.close()


def build_whip(
    settings: Settings,
    gate: PublishGate,
    metrics: IngestMetrics,
    on_session: Callable[[PublishSession], None],
) -> WhipIngest:
    """The WHIP ingest of ``serve``: the RTMP gate and metrics, the same packager."""
    return WhipIngest(
        gate, metrics,
        WhipLimits(settings.whip_max_publishers, settings.hls_target_duration,
                   ice_servers(settings)),
        on_session,
        end_lives=False,  # the packager ends a live once its reconnect window has passed
    )  # fmt: skip


def build_whep(settings: Settings) -> WhepServer:
    """WebRTC playback of the lives published to this process (RTMP or WHIP)."""
    return WhepServer(
        WhepLimits(
            max_viewers=settings.whep_max_viewers,
            reconnect_window_s=settings.hls_reconnect_window,
            ice_servers=ice_servers(settings),
            viewers_per_address=settings.chat_viewers_per_address,
        )
    )


def ice_servers(settings: Settings) -> tuple[IceServer, ...]:
    return tuple(
        IceServer(url, settings.whip_turn_username, settings.whip_turn_credential)
        if url.startswith("turn")
        else IceServer(url)
        for url in settings.whip_ice_servers
    )


def hls_routes_for(
    settings: Settings, storage: Storage, guard: PlaybackGuard | None = None
) -> list[BaseRoute]:
    """/hls as ``serve`` mounts it, with the headers the packager stores objects with. With S3,
    /hls reads through the storage: no bucket name in any URL."""
    reader = storage if settings.storage == "s3" else None
    return hls_routes(settings.media_dir, known_object_headers, reader, guard or PlaybackGuard())


def hls_origin_for(
    settings: Settings, lookup: LiveIndex | None, guard: PlaybackGuard | None = None
) -> Middleware:
    """The /hls fast path (web.hls_origin): the packager's live renditions from memory, and
    local storage's files (none with S3: web.hls reads those through the storage)."""
    root = settings.media_dir if settings.storage != "s3" else None
    return Middleware(HlsOrigin, lookup=lookup, root=root, headers=known_object_headers,
                      guard=guard or PlaybackGuard())  # fmt: skip


async def _serve_http(settings: Settings, app: Starlette) -> None:
    server = _Server(http_config(settings, app), banner(settings))
    await server.serve()
    if not server.started:
        raise SystemExit(1)  # uvicorn has logged why (port in use, lifespan failure)


def http_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    """The uvicorn config of ``serve`` (tests serve the app with it too)."""
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # logging is configured by streamd.logs
        access_log=False,  # one line per request comes from web.middleware instead
        # X-Forwarded-For/-Proto count only from the proxies the operator lists: from anyone
        # else (uvicorn trusts loopback by default) a client would pick the address that the
        # login throttle and viewer counts key on. An explicit list, even empty, keeps
        # uvicorn from reading its FORWARDED_ALLOW_IPS variable.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
        server_header=False,
        timeout_graceful_shutdown=10,
        # HTTPS when a certificate is set (Apple devices need it for LL-HLS). HTTP/1.1 either
        # way: uvicorn has no HTTP/2 (a TLS-terminating proxy in front can add it).
        ssl_certfile=settings.http_tls_cert,
        ssl_keyfile=settings.http_tls_key,
        **WEBSOCKET_OPTIONS,
    )


def _tls_context(settings: Settings) -> ssl.SSLContext:
    assert settings.rtmps_cert is not None and settings.rtmps_key is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.rtmps_cert, settings.rtmps_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"STREAMD_RTMPS_CERT/STREAMD_RTMPS_KEY cannot be loaded: {exc}") from None
    return context


class _Server(uvicorn.Server):
    """uvicorn's server, printing where to point a browser once it listens."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self._banner = banner

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises a captured SIGTERM after its shutdown, which would kill the process
        # before streamd's own clean-up (stopping the embedded PostgreSQL) runs. Handle the
        # signals here instead: a graceful stop, then a normal return.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("received %s, shutting down", sig.name)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl+C skips waiting for connections
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What start-up built (app, pools, modules) lives as long as the process: leave it out
        # of every garbage collection. The chat fan-out allocates per delivery, so collections
        # are frequent; bench/chat_fanout.py measured this.
        gc.freeze()
        if self.started:
            print(self._banner, file=sys.stderr, flush=True)


def banner(settings: Settings) -> str:
    web = settings.http_base_url()
    database = (
        "embedded PostgreSQL in " + str(settings.pg_dir.resolve())
        if (settings.uses_embedded_database)
        else "DATABASE_URL"
    )
    return "\n".join(
        [
            "",
            "streamd is running",
            f"  browser:  {web}/   sign up; a creator clicks Go live: the studio shows OBS's"
            " Server and Stream Key",
            f"  OBS:      Server {settings.rtmp_base_url()}/{settings.rtmp_app}"
            "   Stream Key: in the studio (or `streamd live create`)",
            *(
                [
                    f"  OBS 30+:  Service WHIP, Server {settings.whip_url()}"
                    "   Bearer Token: the stream key"
                ]
                if settings.whip_url()
                else []
            ),
            f"  watch:    {web}/lives/LIVE_ID   or"
            f" {settings.hls_base_url()}/hls/LIVE_ID/master.m3u8 (VLC, Safari, ffplay)",
            f"  API:      {web}/docs   health: {web}/health   metrics: {web}/metrics",
            f"  database: {database}",
            "  stop:     Ctrl+C",
            "",
        ]
    )
