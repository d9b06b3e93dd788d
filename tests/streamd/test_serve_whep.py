"""WebRTC playback (WHEP) end to end, against ``streamd serve`` as an operator runs it: ffmpeg
publishes over RTMP, an aiortc viewer receives the live's H.264 (passed through) and Opus
(transcoded once per live) and decodes both; A/V stay in sync on arrival; the viewer counts;
and the HTTP contract, one test per answer. Nothing is mocked: real PostgreSQL (embedded),
real RTMP and WebRTC over loopback."""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import ServeProcess, cli_env, run_cli, serving
from tests.whep_client import publish_marked, stop, watch

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple\n"


@dataclass
class Platform:
    server: ServeProcess
    log: list[str]
    lives: dict[str, dict[str, str]]

    def rtmp(self, name: str) -> str:
        port = self.server.env["STREAMD_RTMP_PORT"]
        return f"rtmp://127.0.0.1:{port}/live/{self.lives[name]['stream_key']}"

    def whep(self, name: str) -> str:
        return f"{self.server.base_url}/whep/{self.lives[name]['id']}"

    def live(self, name: str) -> dict[str, object]:
        answer = httpx.get(f"{self.server.base_url}/api/lives/{self.lives[name]['id']}")
        return dict(answer.json())

    def wait_on_air(self, name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.live(name)["status"] != "live":
            assert time.monotonic() < deadline, f"{name} never went live"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    with tempfile.TemporaryDirectory(prefix="streamd-serve-whep-") as tmp:
        env = cli_env(
            Path(tmp) / "var",
            STREAMD_HLS_LADDER="none",
            STREAMD_HLS_RECONNECT_WINDOW="2",
            STREAMD_CHAT_REPORT_INTERVAL="0.5",
            STREAMD_API_CACHE_TTL="0.1",
        )
        made = run_cli("user", "create", "--username", "lena", "--email", "l@example.com",
                       "--password-stdin", "--role", "creator", env=env,
                       stdin=PASSWORD)  # fmt: skip
        assert made.returncode == 0, made.stderr
        lives = {}
        for name in ("main", "bframes", "idle", "sold"):
            made = run_cli("live", "create", "--user", "lena", "--title", name, env=env)
            lives[name] = json.loads(made.stdout)
        with serving(env) as (server, log):
            yield Platform(server, log, lives)


def test_a_viewer_gets_the_rtmp_live_decoded_in_sync_and_counted(platform: Platform) -> None:
    publisher = publish_marked(platform.rtmp("main"), seconds=25)
    try:
        platform.wait_on_air("main")
        live = platform.live("main")
        assert live["whep_url"] == platform.whep("main"), live
        counts: list[int] = []

        def poll_counts() -> None:
            for _ in range(16):
                time.sleep(0.5)
                counts.append(int(platform.live("main")["viewer_count"]))  # type: ignore[call-overload]

        poller = threading.Thread(target=poll_counts)
        poller.start()
        got = asyncio.run(watch(platform.whep("main"), seconds=9))
        poller.join()
    finally:
        stop(publisher)
    assert got.status == 201, got.body
    assert got.deleted == 200
    # Decoded from the passed-through H.264: the publisher's size, about 30 fps.
    assert len(got.video) > 150, len(got.video)
    assert {(w, h) for _, _, w, h in got.video} == {(320, 240)}
    assert got.audio_frames > 300, got.audio_frames  # 20 ms Opus frames
    flashes, beeps = got.flashes(), got.beeps()
    assert len(flashes) >= 6 and len(beeps) >= 6, (flashes, beeps, got.audio_peak)
    offsets = [min((b - f for b in beeps), key=abs) for f in flashes]
    print("WHEP A/V offsets on arrival (s):", [round(o, 3) for o in offsets])
    # Arrival times include aiortc's own jitter buffers (audio's holds a few packets).
    assert max(abs(o) for o in offsets[1:]) < 0.15, offsets
    assert 1 in counts, counts  # counted while it watched


def test_contract(platform: Platform) -> None:
    base = platform.server.base_url
    idle = platform.whep("idle")
    sdp = {"Content-Type": "application/sdp"}
    offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    not_on_air = httpx.post(idle, content=offer, headers=sdp)
    assert not_on_air.status_code == 404 and not_on_air.json()["error"]["code"] == "not_live"
    wrong_type = httpx.post(idle, content=offer, headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415 and wrong_type.headers["accept-post"] == "application/sdp"
    assert httpx.post(idle, content="hello", headers=sdp).status_code == 400
    assert httpx.post(idle, content="v=0 m=" + "x" * 70_000, headers=sdp).status_code == 413
    preflight = httpx.options(idle)
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["access-control-allow-methods"]
    patch = httpx.patch(f"{idle}/whatever")
    assert patch.status_code == 405 and patch.headers["allow"] == "DELETE, OPTIONS"
    assert httpx.delete(f"{idle}/whatever").status_code == 404
    assert httpx.post(f"{base}/whep/nope", content=offer, headers=sdp).status_code == 404
    assert platform.live("idle")["whep_url"] is None  # off air: nothing to offer


def test_a_stream_with_b_frames_is_refused_with_why(platform: Platform) -> None:
    publisher = publish_marked(platform.rtmp("bframes"), seconds=12, bframes=2)
    try:
        platform.wait_on_air("bframes")
        time.sleep(1.5)
        got = asyncio.run(watch(platform.whep("bframes"), seconds=0))
        if got.status == 201:  # the first B-frame had not arrived yet when it joined
            time.sleep(1)
            got = asyncio.run(watch(platform.whep("bframes"), seconds=0))
    finally:
        stop(publisher)
    assert got.status == 422, got.body
    assert json.loads(got.body)["error"]["code"] == "b_frames"


def test_a_sold_live_plays_only_with_its_grant(platform: Platform) -> None:
    """The /hls guard decides for WHEP too: no grant -> 403; the owner's grant (the cookie that
    ``POST /api/lives/{id}/playback`` sets, now also for ``/whep/{id}``) gets through the guard
    (then 404: not on air)."""
    live_id = platform.lives["sold"]["id"]
    with httpx.Client(base_url=platform.server.base_url, timeout=10) as http:
        login = http.post(
            "/api/auth/login", json={"username": "lena", "password": PASSWORD.strip()}
        )
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        priced = http.patch(f"/api/lives/{live_id}", headers=auth,
                            json={"price": {"amount": 499, "currency": "USD"}})  # fmt: skip
        assert priced.status_code == 200, priced.text
        sdp = {"Content-Type": "application/sdp"}
        offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        refused = httpx.post(platform.whep("sold"), content=offer, headers=sdp)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "playback_forbidden"
        granted = http.post(f"/api/lives/{live_id}/playback", headers=auth)
        assert granted.status_code == 200, granted.text
        assert f"Path=/whep/{live_id}" in granted.headers["set-cookie"]
        through = http.post(f"/whep/{live_id}", content=offer, headers=sdp)  # with the cookie
        assert through.status_code == 404 and through.json()["error"]["code"] == "not_live"
