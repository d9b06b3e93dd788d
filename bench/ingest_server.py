"""The production RTMP ingest path alone, for benchmarks.

Builds what ``streamd serve`` builds for ingest (the asyncpg pools of :func:`db.pools.
open_database`, a :class:`PublishGate`, an :class:`RtmpServer` with its metrics), on uvloop, on
127.0.0.1:PORT, plus one consumer per publish session that reads and discards every item (where
the packager would be). No HTTP app.

Talks on stdin/stdout, one JSON object a line: it prints ``{"ready": true, ...}`` once it listens;
each ``stats`` line on stdin is answered with counters (sessions, bytes and packets received,
items still queued or dropped for the consumers); ``quit`` or end of input shuts it down the way
``streamd serve`` does (RTMP server, then the gate, then the pools).

    .venv/bin/python bench/ingest_server.py --database-url URL --port 1935
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

import uvloop
from prometheus_client import CollectorRegistry

from config.settings import Settings
from db.pools import open_database
from ingest.gate import PublishGate
from ingest.metrics import IngestMetrics
from ingest.server import COALESCE_S, RtmpLimits, RtmpServer
from ingest.session import PublishSession, Subscription


class Consumers:
    """One discarding consumer per session; keeps every session for the totals."""

    def __init__(self) -> None:
        self.sessions: list[tuple[PublishSession, Subscription]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def on_session(self, session: PublishSession) -> None:
        sub = session.subscribe("bench-discard")
        self.sessions.append((session, sub))
        task = asyncio.get_running_loop().create_task(_discard(sub))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def stats(self, rtmp: RtmpServer) -> dict[str, Any]:
        return {
            "sessions": len(rtmp.sessions),
            "connections": len(rtmp.connections),
            "sessions_total": len(self.sessions),
            "consumers_running": len(self.tasks),
            "bytes_in": sum(s.bytes_in for s, _ in self.sessions),
            "packets": sum(s.packets for s, _ in self.sessions),
            "queued": sum(len(sub) for _, sub in self.sessions),
            "dropped": sum(sub.dropped for _, sub in self.sessions),
            "bytes_in_by_live": {str(s.live_id): s.bytes_in for s, _ in self.sessions},
        }


async def _discard(sub: Subscription) -> None:
    async for _item in sub:
        pass


def _print(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve(database_url: str, host: str, port: int, coalesce_s: float) -> None:
    settings = Settings(database_url=database_url, rtmp_host=host, rtmp_port=port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    db = await open_database(database_url, settings)
    try:
        gate = PublishGate(db.primary, database_url, settings.rtmp_app)
        await gate.open()
        consumers = Consumers()
        rtmp = RtmpServer(
            gate,
            IngestMetrics(CollectorRegistry()),
            RtmpLimits(
                max_connections=settings.rtmp_max_connections,
                handshake_timeout=settings.rtmp_handshake_timeout,
                idle_timeout=settings.rtmp_idle_timeout,
            ),
            on_session=consumers.on_session,
            coalesce_s=coalesce_s,
        )
        try:
            await rtmp.listen(settings.rtmp_host, settings.rtmp_port)
            _print({"ready": True, "pid": os.getpid(), "port": rtmp.ports()[0]})
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
            )
            commands = loop.create_task(_commands(reader, rtmp, consumers, stop))
            await stop.wait()
            commands.cancel()
        finally:
            await rtmp.close()
            await gate.close()
            for task in list(consumers.tasks):
                task.cancel()
    finally:
        await db.close()


async def _commands(
    reader: asyncio.StreamReader, rtmp: RtmpServer, consumers: Consumers, stop: asyncio.Event
) -> None:
    while line := await reader.readline():
        command = line.decode().strip()
        if command == "stats":
            _print(consumers.stats(rtmp))
        elif command == "quit":
            break
        elif command:
            _print({"error": f"unknown command {command[:40]!r}"})
    stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a migrated streamd database")
    parser.add_argument("--port", type=int, default=1935, help="RTMP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--coalesce-s", type=float, default=COALESCE_S, help="read coalescing (RtmpServer)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    uvloop.run(serve(args.database_url, args.host, args.port, args.coalesce_s))


if __name__ == "__main__":
    main()
