"""``streamd serve``: one event loop running the HTTP app (RTMP joins it in the ingest issue)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Iterator

import uvicorn

from config.settings import Settings
from web.app import create_app

log = logging.getLogger("streamd")


async def run_server(settings: Settings, database_url: str) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn drains connections and runs the lifespan shutdown."""
    app = create_app(settings, database_url)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # logging is configured by streamd.logs
        access_log=False,  # one line per request comes from web.middleware instead
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = _Server(config, banner(settings))
    await server.serve()
    if not server.started:
        raise SystemExit(1)  # uvicorn has logged why (port in use, lifespan failure)


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
            f"  browser:  {web}/",
            f"  health:   {web}/health   ready: {web}/ready   metrics: {web}/metrics",
            f"  database: {database}",
            "  OBS:      RTMP ingest is not part of this build yet (see the README)",
            "  stop:     Ctrl+C",
            "",
        ]
    )
