"""VOD end to end below the browser: uploads through the API (real PostgreSQL, local disk), the
job queue (pgqueuer), workers (in-process, and ``streamd worker`` processes for the SIGKILL
case), probing and transcoding with PyAV, outputs checked with the ffmpeg CLI. Nothing is
mocked. Sources are made by the ffmpeg CLI; hostile files are written byte by byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import imageio_ffmpeg
import m3u8
import pytest

from config.settings import Settings
from db import videos
from streamd.worker import running_worker
from tests.helpers import REPO, cli_env
from tests.web.api_helpers import Api, MakeApi, User

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
PART = 1 << 20
LADDER = "360p:640x360@30:700k,240p:426x240@30:300k"


def make_video(path: Path, seconds: float, size: str = "854x480", *, audio: bool = True,
               video: bool = True, fmt: str = "mp4") -> Path:  # fmt: skip
    inputs = []
    if video:
        inputs += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30"]
    if audio:
        inputs += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    codecs = (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"] if video
              else []) + (["-c:a", "aac"] if audio else [])  # fmt: skip
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *inputs,
                    "-t", str(seconds), *codecs, "-f", fmt, str(path)],
                   check=True, timeout=120)  # fmt: skip
    return path


def local_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def upload(api: Api, user: User, data: bytes, filename: str = "clip.mp4",
                 content_type: str = "video/mp4") -> int:  # fmt: skip
    r = await api.client.post("/api/videos/uploads", headers=user.auth, json={
        "filename": filename, "size": len(data), "content_type": content_type,
        "title": filename})  # fmt: skip
    assert r.status_code == 201, r.text
    up = r.json()
    for part in up["parts"]:
        start = (part["number"] - 1) * up["part_size"]
        body = data[start : start + up["part_size"]]
        r = await api.client.put(local_path(part["url"]), content=body)
        assert r.status_code == 200, r.text
    r = await api.client.post(f"/api/videos/uploads/{up['upload_id']}/complete",
                              headers=user.auth)  # fmt: skip
    assert r.status_code == 202, r.text
    return int(up["video_id"])


async def settled(api: Api, video_id: int, timeout: float = 120) -> dict[str, Any]:
    """The video once ready or failed (polled the way a page without SSE would)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await videos.get_full(api.pool, video_id)
        assert row is not None
        if row["status"] in ("ready", "failed"):
            return dict(row)
        await asyncio.sleep(0.2)
    raise AssertionError(f"video {video_id} still {row['status']} after {timeout} s")


def vod_settings(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    from config.parsers import ladder

    return {"data_dir": tmp_path, "upload_part_size": PART, "upload_max_size": PART * 1000,
            "vod_ladder": ladder(())(LADDER), "vod_x264_preset": "ultrafast",
            "vod_job_lease": 5.0, **extra}  # fmt: skip


@contextlib.asynccontextmanager
async def worker(api: Api, database_url: str) -> AsyncIterator[None]:
    settings: Settings = api.app.state.settings
    async with running_worker(settings, database_url, api.pool, api.app.state.storage, 1):
        yield


@pytest.fixture
async def vod_api(make_api: MakeApi, tmp_path: Path) -> Api:
    return await make_api(**vod_settings(tmp_path))


def decodes(url_or_path: str) -> None:
    done = subprocess.run([FFMPEG, "-hide_banner", "-v", "error", "-i", url_or_path,
                           "-f", "null", "-"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


async def test_an_upload_becomes_a_ladder_with_previews(
    vod_api: Api, database_url: str, tmp_path: Path
) -> None:
    api = vod_api
    creator = await api.make_user("creator")
    data = make_video(tmp_path / "src.mp4", 6).read_bytes()
    async with worker(api, database_url):
        video_id = await upload(api, creator, data)
        row = await settled(api, video_id)
    assert row["status"] == "ready", row["error_message"]
    media = tmp_path / "media"
    prefix = media / row["output_prefix"]
    master = m3u8.load(str(prefix / "master.m3u8"))
    sizes = sorted(p.stream_info.resolution for p in master.playlists)
    assert sizes == [(428, 240), (640, 360)]  # 854x480's aspect, even widths
    for playlist in master.playlists:
        decodes(str(prefix / playlist.uri))
    assert abs(row["duration"] - 6) < 0.2
    assert (prefix / "poster.jpg").stat().st_size > 1000
    vtt = (prefix / "storyboard.vtt").read_text()
    assert vtt.startswith("WEBVTT") and "storyboard.jpg#xywh=" in vtt
    body = (await api.client.get(f"/api/videos/{video_id}")).json()
    assert [q["name"] for q in body["qualities"]] == ["360p", "240p"]
    assert body["playback_url"].endswith(f"{row['output_prefix']}/master.m3u8")
    assert body["thumbnail_url"].endswith("poster.jpg")
    assert body["processing_progress"] == 100 and body["eta_seconds"] is None
    # One output set, and the original kept for re-processing.
    assert [p.name for p in (media / "hls" / "vod" / str(video_id)).iterdir()] == [prefix.name]
    assert (media / "originals" / str(video_id) / "source.mp4").read_bytes() == data


class Recorder(http.server.BaseHTTPRequestHandler):
    """A loopback web server that notes every request: the hostile files name it."""

    hits: list[str] = []  # noqa: RUF012 - shared by the handler instances on purpose

    def do_GET(self) -> None:
        Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    Recorder.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def hostile_files(tmp_path: Path, url: str) -> dict[str, bytes]:
    good = make_video(tmp_path / "good.mp4", 2, "320x240").read_bytes()
    mkv = make_video(tmp_path / "good.mkv", 2, "320x240", fmt="matroska").read_bytes()
    audio = make_video(tmp_path / "audio.mp4", 2, video=False).read_bytes()
    lying = bytearray(good)
    for box in (b"tkhd", b"avc1"):  # claim 16384x16384 in the track and sample entry
        at = lying.find(box, lying.find(b"moov"))  # not the "avc1" brand of ftyp
        if box == b"tkhd":
            end = at + 4 + 84 - 8  # version 0 tkhd: width/height are its last 8 bytes
            lying[end : end + 8] = (16384 << 16).to_bytes(4, "big") * 2
        else:
            lying[at + 28 : at + 32] = (16384).to_bytes(2, "big") * 2
    long_claim = bytearray(good)
    at = long_claim.find(b"mvhd")
    scale = int.from_bytes(long_claim[at + 16 : at + 20], "big")
    long_claim[at + 20 : at + 24] = (scale * 36000).to_bytes(4, "big")  # "10 hours"
    return {
        "truncated.mp4": good[: len(good) // 3],
        "playlist.mp4": f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{url}/seg.ts\n"
        "#EXTINF:2,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n".encode(),
        "concat.mp4": f"ffconcat version 1.0\nfile '{url}/a.mp4'\nfile '/etc/passwd'\n".encode(),
        "subfile.mkv": f"subfile,,start,0,end,0,,:{url}/x\n".encode(),
        "audio-only.mp4": audio,
        "lying-size.mp4": bytes(lying),
        "lying-duration.mp4": bytes(long_claim),
        "polyglot.mkv": b"\x89PNG\r\n\x1a\n" + mkv,
        "noise.mp4": os.urandom(200_000),
    }


async def test_hostile_files_fail_cleanly_with_no_outbound_access(
    vod_api: Api, database_url: str, tmp_path: Path, recorder: str
) -> None:
    api = vod_api
    creator = await api.make_user("creator")
    files = hostile_files(tmp_path, recorder)
    async with worker(api, database_url):
        made = {name: await upload(api, creator, data, name,
                                   "video/x-matroska" if name.endswith(".mkv") else "video/mp4")
                for name, data in files.items()}  # fmt: skip
        results = {name: await settled(api, vid) for name, vid in made.items()}
        # The worker lives on: a good file after them all is processed.
        good = await upload(api, creator, make_video(tmp_path / "after.mp4", 2).read_bytes())
        assert (await settled(api, good))["status"] == "ready"
    for name, row in results.items():
        assert row["status"] == "failed", (name, row["status"])
        message = row["error_message"]
        assert message and len(message) < 300 and "Traceback" not in message, (name, message)
        body = (await api.client.get(f"/api/videos/{made[name]}", headers=creator.auth)).json()
        assert body["error_message"] == message and body["playback_url"] is None
    assert Recorder.hits == []
    assert not list((tmp_path / "media" / "hls" / "vod").glob(f"{made['noise.mp4']}/*"))


async def test_delete_while_transcoding_stops_the_job_and_removes_everything(
    make_api: MakeApi, database_url: str, tmp_path: Path
) -> None:
    api = await make_api(**vod_settings(tmp_path, vod_x264_preset="medium"))
    creator = await api.make_user("creator")
    data = make_video(tmp_path / "long.mp4", 30, "1280x720").read_bytes()
    media = tmp_path / "media"
    async with worker(api, database_url):
        video_id = await upload(api, creator, data)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = await videos.get_full(api.pool, video_id)
            assert row is not None
            if row["status"] == "processing" and row["processing_progress"] > 0:
                break
            await asyncio.sleep(0.1)
        r = await api.client.delete(f"/api/videos/{video_id}", headers=creator.auth)
        assert r.status_code == 204
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            left = [p for p in (media / "hls" / "vod" / str(video_id),
                                media / "originals" / str(video_id)) if p.exists() and any(
                p.rglob("*"))]  # fmt: skip
            jobs = await api.pool.fetchval("SELECT count(*) FROM pgqueuer")
            if not left and jobs == 0:
                break
            await asyncio.sleep(0.2)
        assert not left, left
        assert jobs == 0
        # The worker took no harm: the next upload is processed.
        other = await upload(api, creator, make_video(tmp_path / "next.mp4", 2).read_bytes())
        assert (await settled(api, other))["status"] == "ready"
    assert await api.pool.fetchval("SELECT count(*) FROM videos WHERE id = $1", video_id) == 0


async def test_a_sigkilled_worker_s_job_is_finished_by_another(
    make_api: MakeApi, database_url: str, tmp_path: Path
) -> None:
    """Two ``streamd worker`` processes on one database and media directory: the first is
    SIGKILLed mid-transcode; once its lease (5 s) expires the second takes the job and
    publishes one output set."""
    api = await make_api(**vod_settings(tmp_path, vod_x264_preset="medium"))
    creator = await api.make_user("creator")
    data = make_video(tmp_path / "long.mp4", 20, "1280x720").read_bytes()
    env = cli_env(tmp_path, DATABASE_URL=database_url, STREAMD_JWT_SECRET="s" * 40,
                  STREAMD_VOD_LADDER=LADDER, STREAMD_VOD_X264_PRESET="medium",
                  STREAMD_VOD_JOB_LEASE="5", STREAMD_LOG_LEVEL="info")  # fmt: skip
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]

    def start_worker(log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:  # a file, not a pipe nobody reads: it never blocks
            return subprocess.Popen([sys.executable, "-m", "streamd", "worker"], env=env,
                                    cwd=REPO, stdout=out, stderr=out)  # fmt: skip

    first = start_worker(logs[0])
    second = None
    try:
        video_id = await upload(api, creator, data)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            row = await videos.get_full(api.pool, video_id)
            assert row is not None
            if row["status"] == "processing" and row["processing_progress"] >= 5:
                break
            assert first.poll() is None, logs[0].read_text()
            await asyncio.sleep(0.2)
        assert row["status"] == "processing", row["status"]
        first_run = await api.pool.fetchval("SELECT run_token FROM videos WHERE id = $1",
                                            video_id)  # fmt: skip
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = start_worker(logs[1])
        row = await settled(api, video_id, timeout=180)
        assert row["status"] == "ready", (row["error_message"], logs[1].read_text())
        runs = list((tmp_path / "media" / "hls" / "vod" / str(video_id)).iterdir())
        assert [p.name for p in runs] == [Path(row["output_prefix"]).name]
        assert Path(row["output_prefix"]).name != first_run  # the second run's own set
        master = m3u8.load(str(tmp_path / "media" / row["output_prefix"] / "master.m3u8"))
        for playlist in master.playlists:
            decodes(str(tmp_path / "media" / row["output_prefix"] / playlist.uri))
        attempts = await api.pool.fetchval("SELECT job_attempts FROM videos WHERE id = $1",
                                           video_id)  # fmt: skip
        assert attempts == 2
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
