"""A streamd stand-in for the crash test: RTMP ingest + the packager, recording, nothing else.

    python tests/packager/crash_server.py DATABASE_URL STORAGE_ROOT NODE

Prints its RTMP port on a line, then runs until killed (the test sends SIGKILL mid-live).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
from prometheus_client import CollectorRegistry

from config.settings import Settings
from ingest.gate import PublishGate
from ingest.metrics import IngestMetrics
from ingest.server import RtmpLimits, RtmpServer
from packager.options import PackagerOptions
from packager.packager import Packager
from packager.storage.local import LocalStorage


async def main(database_url: str, root: str, node: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    gate = PublishGate(pool, database_url, "live")
    await gate.open()
    options = PackagerOptions.from_settings(Settings())
    packager = Packager(options, LocalStorage(Path(root)), pool, node=node)
    server = RtmpServer(
        gate, IngestMetrics(CollectorRegistry()), RtmpLimits(), on_session=packager.on_session
    )
    await server.listen("127.0.0.1", 0)
    print(server.ports()[0], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
