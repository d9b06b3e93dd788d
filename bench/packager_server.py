"""RTMP ingest plus the live packager (source rendition only; with ``--ladder`` also the
transcoded DEFAULT_LADDER at ``veryfast`` with the production shedding policy), for benchmarks.

What ``bench/ingest_server.py`` builds (pools, ``PublishGate``, ``RtmpServer``, metrics, on
uvloop) with the production :class:`packager.packager.Packager` as the publish sessions'
consumer, writing CMAF segments and playlists to ``--root`` through ``LocalStorage``. Recording
is off unless ``--recording`` (nginx-rtmp's ``hls on`` keeps no recording either; old
segments are deleted as they leave the window, as nginx-rtmp's ``hls_cleanup`` does).

Same stdin/stdout protocol as ingest_server.py: a ``{"ready": true, ...}`` line once it
listens; ``stats`` is answered with one JSON line (the keys ingest_density.py reads, plus the
packager's); ``quit`` or end of input shuts it down.

    .venv/bin/python bench/packager_server.py --database-url URL --root DIR --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import uvloop
from prometheus_client import CollectorRegistry

from config.settings import Settings
from db.pools import open_database
from ingest.gate import PublishGate
from ingest.metrics import IngestMetrics
from ingest.server import COALESCE_S, LADDER_COALESCE_S, RtmpLimits, RtmpServer
from ingest.session import PublishSession
from packager.ladder.ladder import Ladder
from packager.ladder.metrics import LadderMetrics
from packager.metrics import PackagerMetrics
from packager.options import AUDIO_WAIT, PackagerOptions
from packager.packager import Packager
from packager.pipeline import OutputCallback, TranscoderFactory
from packager.storage.local import LocalStorage
from packager.types import PosterWriter


class Sessions:
    """Every session seen, for the totals; hands each to the packager."""

    def __init__(self, packager: Packager) -> None:
        self.packager = packager
        self.all: list[PublishSession] = []

    def on_session(self, session: PublishSession) -> None:
        self.all.append(session)
        self.packager.on_session(session)

    def stats(self, rtmp: RtmpServer, registry: CollectorRegistry) -> dict[str, Any]:
        def sample(name: str, **labels: str) -> float:
            return registry.get_sample_value(name, labels) or 0.0

        subs = [s for session in self.all for s in session.subscriptions]
        return {
            "sessions": len(rtmp.sessions),
            "connections": len(rtmp.connections),
            "sessions_total": len(self.all),
            "bytes_in": sum(s.bytes_in for s in self.all),
            "packets": sum(s.packets for s in self.all),
            "queued": sum(len(sub) for sub in subs),
            "dropped": sum(s.dropped for s in self.all),
            "pipelines": len(self.packager.lives),
            "segments": sample("streamd_packager_segments_total", kind="source"),
            "segment_bytes": sample("streamd_packager_segment_bytes_total", kind="source"),
            "dropped_segments": sample("streamd_packager_dropped_segments_total"),
            "storage_errors": sample("streamd_packager_storage_errors_total"),
            "ladder_segments": sample("streamd_packager_segments_total", kind="ladder"),
            "ladder_sheds": sum(
                sample("streamd_ladder_rungs_shed_total", rung=r) for r in ("720p", "480p", "360p")
            ),
        }


def _print(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace) -> None:
    settings = Settings(
        database_url=args.database_url, rtmp_host=args.host, rtmp_port=args.port,
        hls_recording=args.recording, hls_segment_format=args.format, hls_reconnect_window=5.0,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    registry = CollectorRegistry()
    db = await open_database(args.database_url, settings)
    try:
        gate = PublishGate(db.primary, args.database_url, settings.rtmp_app)
        await gate.open()
        options = dataclasses.replace(
            PackagerOptions.from_settings(settings), audio_wait=args.audio_wait
        )
        ladder_factory: TranscoderFactory | None = None
        if args.ladder:
            ladder_metrics = LadderMetrics(registry)

            def make_ladder(on_output: OutputCallback, thumbnailer: PosterWriter | None) -> Ladder:
                # As streamd/media.py builds it, without posters.
                return Ladder(
                    options.ladder, options.x264_preset, on_output=on_output, loop=loop,
                    metrics=ladder_metrics, policy=options.ladder_policy,
                )  # fmt: skip

            ladder_factory = make_ladder
        packager = Packager(
            options, LocalStorage(args.root), db.primary, metrics=PackagerMetrics(registry),
            ladder_factory=ladder_factory,
        )  # fmt: skip
        sessions = Sessions(packager)
        rtmp = RtmpServer(
            gate,
            IngestMetrics(registry),
            RtmpLimits(
                max_connections=settings.rtmp_max_connections,
                handshake_timeout=settings.rtmp_handshake_timeout,
                idle_timeout=settings.rtmp_idle_timeout,
            ),
            on_session=sessions.on_session,
            coalesce_s=LADDER_COALESCE_S if args.ladder else COALESCE_S,  # as streamd serve
        )
        try:
            await rtmp.listen(settings.rtmp_host, settings.rtmp_port)
            _print({"ready": True, "pid": os.getpid(), "port": rtmp.ports()[0]})
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
            )
            commands = loop.create_task(_commands(reader, rtmp, sessions, registry, stop))
            await stop.wait()
            commands.cancel()
        finally:
            await rtmp.close()
            await packager.close()
            await gate.close()
    finally:
        await db.close()


async def _commands(
    reader: asyncio.StreamReader,
    rtmp: RtmpServer,
    sessions: Sessions,
    registry: CollectorRegistry,
    stop: asyncio.Event,
) -> None:
    while line := await reader.readline():
        command = line.decode().strip()
        if command == "stats":
            _print(sessions.stats(rtmp, registry))
        elif command == "quit":
            break
        elif command:
            _print({"error": f"unknown command {command[:40]!r}"})
    stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a migrated streamd database")
    parser.add_argument("--root", type=Path, required=True, help="storage root (segments)")
    parser.add_argument("--port", type=int, default=1935, help="RTMP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--format", default="cmaf", choices=["cmaf", "ts"])
    parser.add_argument("--recording", action="store_true", help="keep segments, journal them")
    parser.add_argument(
        "--audio-wait", type=float, default=AUDIO_WAIT, help="PackagerOptions.audio_wait (seconds)"
    )
    parser.add_argument("--ladder", action="store_true", help="transcode DEFAULT_LADDER too")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning"])
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
