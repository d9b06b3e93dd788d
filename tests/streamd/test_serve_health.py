"""End to end: a real ffmpeg publisher to ``streamd serve`` (STREAMD_HEALTH_INTERVAL=1): the
owner's ``GET /api/lives/{id}/health`` shows the publish as it was made (bitrate, frame rate,
keyframe interval, audio, codec and size), and its chat socket gets the same samples pushed.
Nothing is mocked."""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import imageio_ffmpeg
import pytest
from websockets.sync.client import connect

from tests.helpers import ServeProcess, cli_env, run_cli, self_signed, serving

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
FPS, GOP_S, SECONDS = 25, 2, 8


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path (see tests/streamd/test_serve_ladder.py).
    with tempfile.TemporaryDirectory(prefix="streamd-serve-health-") as tmp:
        yield Path(tmp) / "var"


def publish(port: str, key: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
         "-re", "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={FPS}",
         "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", str(FPS * GOP_S),
         "-keyint_min", str(FPS * GOP_S), "-sc_threshold", "0", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "96k", "-t", str(SECONDS), "-f", "flv",
         f"rtmp://127.0.0.1:{port}/live/{key}"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.timeout(300)
def test_health_of_a_real_publish(data_dir: Path) -> None:
    env = cli_env(data_dir, STREAMD_HEALTH_INTERVAL="1", STREAMD_HLS_LADDER="none",
                  STREAMD_HLS_RECORDING="false")  # fmt: skip
    made = run_cli("user", "create", "--username", "lena", "--email", "l@example.com",
                   "--password-stdin", "--role", "creator", env=env,
                   stdin=PASSWORD + "\n")  # fmt: skip
    assert made.returncode == 0, made.stderr
    live = json.loads(run_cli("live", "create", "--user", "lena", "--title", "h", env=env).stdout)
    server = ServeProcess(env)
    publisher: subprocess.Popen[str] | None = None
    stack = contextlib.ExitStack()
    try:
        server.wait_healthy()
        http = stack.enter_context(httpx.Client(base_url=server.base_url, timeout=10))
        login = http.post("/api/auth/login", json={"username": "lena", "password": PASSWORD})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        ticket = http.post(f"/api/lives/{live['id']}/chat/ticket", headers=auth).json()["ticket"]
        ws_url = server.base_url.replace("http://", "ws://")
        with connect(f"{ws_url}/ws/lives/{live['id']}/chat?ticket={ticket}") as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
            publisher = publish(server.env["STREAMD_RTMP_PORT"], live["stream_key"])
            pushed = None
            deadline = time.monotonic() + 30
            while pushed is None and time.monotonic() < deadline:
                event = json.loads(ws.recv(timeout=30))
                if event["type"] == "health" and event["sample"]["bitrate_kbps"] > 0:
                    pushed = event["sample"]
            assert pushed is not None, "no health event on the owner's socket"
            _, err = publisher.communicate(timeout=SECONDS + 60)
            assert publisher.returncode == 0, err
        # Until a sample after the publisher left (0 kbps: what a drop-out looks like); on a
        # loaded machine the packager may still be working through the last packets.
        deadline = time.monotonic() + 20
        while True:
            r = http.get(f"/api/lives/{live['id']}/health", headers=auth)
            assert r.status_code == 200, r.text
            body = r.json()
            if body["samples"][-1]["bitrate_kbps"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert (body["live_id"], body["status"], body["interval"]) == (live["id"], "live", 1.0)
        samples = body["samples"]
        assert [s["at"] for s in samples] == sorted(s["at"] for s in samples)
        flowing = [s for s in samples if s["bitrate_kbps"] > 0]
        assert len(flowing) >= SECONDS - 3, samples
        assert samples[-1]["bitrate_kbps"] == 0
        for s in flowing:
            assert s["bitrate_kbps"] == pytest.approx(s["video_kbps"] + s["audio_kbps"], abs=0.2)
            assert (s["video_codec"], s["width"], s["height"]) == ("h264", 320, 240)
            assert s["rungs"] == s["rungs_shed"] == []
            assert s["viewer_count"] >= 0
        # Whole seconds of the publish (not its first or last, which may be cut short).
        steady = flowing[1:-1]
        assert all(s["audio"] for s in steady), steady
        assert all(s["audio_kbps"] > 50 for s in steady), steady  # 96 kbit/s AAC
        rates = [s["fps"] for s in steady if s["fps"] is not None]
        assert statistics.median(rates) == pytest.approx(FPS, abs=0.5), rates
        intervals = [s["keyframe_interval_s"] for s in flowing if s["keyframe_interval_s"]]
        assert intervals and all(i == pytest.approx(GOP_S, abs=0.05) for i in intervals)
        assert flowing[-1]["keyframe_interval_s"] == pytest.approx(GOP_S, abs=0.05)
        # The socket got one of the samples the endpoint lists.
        stored = {datetime.fromisoformat(s["at"]): s for s in samples}
        at = datetime.fromisoformat(pushed.pop("at"))
        assert {k: v for k, v in stored[at].items() if k != "at"} == pushed
    finally:
        stack.close()
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
            publisher.communicate()
        code, _, err = server.stop(timeout=60)
    assert code == 0, err[-4000:]


def test_serve_speaks_https_with_a_certificate(tmp_path: Path) -> None:
    """STREAMD_HTTP_TLS_CERT/KEY: the HTTP listener serves HTTPS (Apple devices need it for
    LL-HLS), prints https:// URLs, and a plain-HTTP request gets no page."""
    cert, key = self_signed(tmp_path)
    with tempfile.TemporaryDirectory(prefix="streamd-https-") as var:  # see test_serve_ladder
        env = cli_env(Path(var), STREAMD_HTTP_TLS_CERT=str(cert), STREAMD_HTTP_TLS_KEY=str(key))
        log = _serve_https(env)
    assert any("https://127.0.0.1:" in line for line in log)


def _serve_https(env: dict[str, str]) -> list[str]:
    with serving(env) as (server, log):
        assert server.base_url.startswith("https://")
        answer = httpx.get(f"{server.base_url}/health", verify=server.verify)
        assert answer.status_code == 200
        hls = httpx.get(f"{server.base_url}/hls/1/master.m3u8", verify=server.verify)
        assert hls.status_code == 404 and hls.json()["error"]["code"] == "not_found"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.http_port}/health", timeout=2)
    return log


def test_half_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    done = run_cli("serve", env=cli_env(tmp_path / "var", STREAMD_HTTP_TLS_CERT=str(cert)))
    assert done.returncode != 0
    assert "STREAMD_HTTP_TLS_CERT and STREAMD_HTTP_TLS_KEY are invalid" in done.stderr
