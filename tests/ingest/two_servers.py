"""Two ``streamd serve`` processes on one database and a real ffmpeg publisher: what the tests
of cuts across processes (a stop, a demotion) share."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg
import imageio_ffmpeg

from tests.helpers import ServeProcess, cli_env

SECRET = "s" * 40  # the JWT secret both processes share


def serve(tmp_path: Path, name: str, url: str) -> ServeProcess:
    """A ``streamd serve`` with its own data folder and ports, source rendition only."""
    return ServeProcess(cli_env(
        tmp_path / name, DATABASE_URL=url, STREAMD_JWT_SECRET=SECRET, STREAMD_HLS_LADDER="none",
    ))  # fmt: skip


def publish(port: str, key: str, seconds: int) -> subprocess.Popen[str]:
    """ffmpeg publishing a test pattern in real time for ``seconds``."""
    return subprocess.Popen(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
         "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
         "-f", "flv", f"rtmp://127.0.0.1:{port}/live/{key}"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


async def wait_status(conn: asyncpg.Connection, live_id: int, want: str) -> str:
    """The live's status once it is ``want``, or after 20 s whatever it is then."""
    status = ""
    for _ in range(200):
        status = str(await conn.fetchval("SELECT status FROM lives WHERE id = $1", live_id))
        if status == want:
            break
        await asyncio.sleep(0.1)
    return status


def stop_publishers(publishers: list[subprocess.Popen[str]]) -> None:
    for publisher in publishers:
        if publisher.poll() is None:
            publisher.kill()
            publisher.communicate()
