"""Ingest's per-read cost with warm and with cold caches: a diagnostic for bench/ingest_density.py.

A publish of ``obs_like_1080p.flv`` (the density benchmark's file) is encoded once into RTMP
bytes by the sans-IO client, then fed to ``ingest.server.RtmpProtocol`` the way uvloop does
(``get_buffer`` / ``buffer_updated``) in reads of ``--read-size`` bytes, with one discarding
subscription on its session. Only ``buffer_updated`` is timed (parse, FLV, fan-out); the copy
into the buffer stands for the kernel's. ``cold`` evicts the CPU caches before every read (a
32 MiB copy and a walk over a large dict), as the publishers' own work does in situ; ``warm``
does not. No sockets, no database, no event loop.

    .venv/bin/python bench/ingest_cold_path.py --read-size 36000 --repeats 5

JSON on stdout: microseconds per message, median and minimum over the repeats.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import imageio_ffmpeg
from ingest_density import ensure_media

from ingest.rtmp import ConnectRequest, PublishRequest, RtmpServerConnection
from ingest.rtmp.client import RtmpClient
from ingest.server import COALESCE_S, RtmpProtocol
from ingest.session import PublishSession

CHUNK_SIZE = 4096  # what FFmpeg sets


def flv_tags(path: Path) -> list[tuple[int, int, bytes]]:
    data = path.read_bytes()
    off = int.from_bytes(data[5:9], "big") + 4
    tags = []
    while off + 11 <= len(data):
        size = int.from_bytes(data[off + 1 : off + 4], "big")
        ts = int.from_bytes(data[off + 4 : off + 7], "big") | data[off + 7] << 24
        tags.append((data[off] & 0x1F, ts, data[off + 11 : off + 11 + size]))
        off += 15 + size
    return tags


def publishing_pair() -> tuple[RtmpClient, RtmpServerConnection]:
    """A client and a server connection, in memory, past publish."""
    rng = random.Random(1)
    client = RtmpClient(random_bytes=rng.randbytes)
    server = RtmpServerConnection(random_bytes=rng.randbytes)

    def pump() -> None:
        server.receive_data(client.data_to_send())
        while (event := server.next_event()) is not None:
            if isinstance(event, ConnectRequest):
                server.accept_connect()
            elif isinstance(event, PublishRequest):
                server.accept_publish(event.stream_id)
        client.receive_data(server.data_to_send())

    pump()
    pump()
    client.connect("live")
    pump()
    client.publish_sequence("key")
    pump()
    client.publish(1, "key")
    pump()
    client.set_chunk_size(CHUNK_SIZE)
    pump()
    client.messages()
    return client, server


def measure(stream: bytes, messages: int, read_size: int, cold: bool) -> float:
    """Microseconds of ``buffer_updated`` per message for one pass over ``stream``."""
    _, conn = publishing_pair()
    proto = RtmpProtocol(SimpleNamespace(coalesce_s=COALESCE_S))  # type: ignore[arg-type]  # no server needed
    proto.conn = conn
    proto.transport = SimpleNamespace(is_closing=lambda: False, write=lambda _d: None,
                                      get_extra_info=lambda _n: None)  # type: ignore[assignment]  # fmt: skip
    proto.session = PublishSession(1, "live", "bench")
    sub = proto.session.subscribe("discard", 1 << 20)
    big = bytearray(32 << 20) if cold else bytearray()
    table = {i: i for i in range(1 << 18)} if cold else {}
    total = 0.0
    for i in range(0, len(stream), read_size):
        piece = stream[i : i + read_size]
        if cold:
            bytes(big)
            sum(table.values())
        room = proto.get_buffer(-1)
        room[: len(piece)] = piece
        del room
        t0 = time.perf_counter()
        proto.buffer_updated(len(piece))
        total += time.perf_counter() - t0
        while sub.get_nowait() is not None:
            pass
    return total / messages * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--read-size", type=int, default=36000, help="bytes per read")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    tags = flv_tags(ensure_media(imageio_ffmpeg.get_ffmpeg_exe()))
    client, _ = publishing_pair()
    for kind, ts, payload in tags:
        if kind == 9:
            client.send_video(1, ts, payload)
        elif kind == 8:
            client.send_audio(1, ts, payload)
    stream = client.data_to_send()
    messages = sum(1 for kind, _, _ in tags if kind in (8, 9))
    result: dict[str, Any] = {"benchmark": "ingest_cold_path", "read_size": args.read_size,
                              "messages": messages, "bytes": len(stream),
                              "python": sys.version.split()[0]}  # fmt: skip
    for label, cold in (("warm", False), ("cold", True)):
        runs = [measure(stream, messages, args.read_size, cold) for _ in range(args.repeats)]
        result[f"{label}_us_per_message"] = {
            "median": round(statistics.median(runs), 2), "min": round(min(runs), 2)
        }  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
