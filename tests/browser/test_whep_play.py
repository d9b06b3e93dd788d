"""WebRTC playback in headless Chromium: a viewer on the watch page turns "Low latency" on while
ffmpeg publishes over RTMP, and Chromium's own WebRTC stack receives and decodes the live's
H.264 (passed through) and Opus; it counts as a viewer, and turning the switch off ends the
WHEP session and brings HLS back. A stream WebRTC cannot carry (B-frames) falls back to HLS
with the server's reason. Nothing is mocked: ``streamd serve``, embedded PostgreSQL, ffmpeg."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.browser_helpers import (
    PageWatch,
    Platform,
    new_context,
    publisher,
    start_platform,
)  # fmt: skip
from tests.whep_client import publish_marked, stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    yield from start_platform(STREAMD_HLS_LADDER="none", STREAMD_CHAT_REPORT_INTERVAL="0.5",
                              STREAMD_API_CACHE_TTL="0.1")  # fmt: skip


def new_live(platform: Platform, title: str) -> dict[str, str]:
    made = platform.cli("live", "create", "--user", "root", "--title", title)
    return dict(json.loads(made.stdout))


def wait_on_air(platform: Platform, live_id: str) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(f"{platform.url}/api/lives/{live_id}").json()["status"] != "live":
        assert time.monotonic() < deadline, "the live never went on air"
        time.sleep(0.2)


def frames_decoded(page: Page) -> int:
    return int(page.evaluate(
        "() => document.querySelector('[data-testid=whep-video]')"
        ".getVideoPlaybackQuality().totalVideoFrames"
    ))  # fmt: skip


@pytest.mark.timeout(180)
def test_chromium_plays_an_rtmp_live_over_webrtc(browser: Browser, platform: Platform) -> None:
    live = new_live(platform, "low latency")
    rtmp = publisher(f"rtmp://127.0.0.1:{platform.rtmp_port}/live/{live['stream_key']}", 60)
    context = new_context(browser, platform.url)
    watch = PageWatch()
    try:
        wait_on_air(platform, live["id"])
        page = watch.attach(context.new_page())
        page.goto(f"/lives/{live['id']}")
        switch = page.locator("[data-testid=low-latency-switch]")
        expect(switch).to_be_visible(timeout=30_000)
        switch.click()
        player = page.locator("[data-testid=whep-player]")
        expect(player).to_have_attribute("data-state", "connected", timeout=20_000)
        expect(player).to_have_attribute("data-playing", "true", timeout=20_000)
        expect(page.locator("[data-test=player]")).to_have_count(0)  # HLS is gone
        first = frames_decoded(page)
        time.sleep(3)
        decoded = frames_decoded(page) - first
        assert decoded > 45, decoded  # ~30 fps decoded by Chromium from the passed-through H.264
        size = page.evaluate("() => { const v = document.querySelector('video');"
                             " return [v.videoWidth, v.videoHeight]; }")  # fmt: skip
        assert size == [640, 360]
        stats = page.evaluate("""async () => {
            const audio = [...document.querySelectorAll('video')][0].srcObject.getAudioTracks();
            return audio.map(t => t.readyState); }""")  # fmt: skip
        assert stats == ["live"]
        deadline = time.monotonic() + 10
        while httpx.get(f"{platform.url}/api/lives/{live['id']}").json()["viewer_count"] < 1:
            assert time.monotonic() < deadline, "the WebRTC viewer was never counted"
            time.sleep(0.3)
        switch.click()  # off: the session is deleted, HLS comes back
        expect(page.locator("[data-test=player]")).to_have_count(1, timeout=10_000)
        deadline = time.monotonic() + 10
        while not any("ended by the viewer (DELETE)" in line for line in platform.log):
            assert time.monotonic() < deadline, "the WHEP session was not deleted"
            time.sleep(0.2)
        watch.check()
    finally:
        context.close()
        rtmp.kill()
        rtmp.wait()
        if rtmp.stderr is not None:
            rtmp.stderr.close()


@pytest.mark.timeout(180)
def test_a_stream_webrtc_cannot_carry_falls_back_to_hls_with_why(
    browser: Browser, platform: Platform
) -> None:
    live = new_live(platform, "b-frames")
    rtmp = publish_marked(f"rtmp://127.0.0.1:{platform.rtmp_port}/live/{live['stream_key']}",
                          seconds=60, bframes=2)  # fmt: skip
    context = new_context(browser, platform.url)
    try:
        wait_on_air(platform, live["id"])
        page = context.new_page()
        page.goto(f"/lives/{live['id']}")
        switch = page.locator("[data-testid=low-latency-switch]")
        expect(switch).to_be_visible(timeout=30_000)
        switch.click()
        alert = page.locator("[data-testid=whep-error]")
        expect(alert).to_be_visible(timeout=20_000)
        expect(alert).to_contain_text("B-frames")
        expect(page.locator("[data-test=player]")).to_have_count(1)  # back on HLS
        assert page.evaluate("() => localStorage.getItem('streamd.lowLatency')") == "0"
    finally:
        context.close()
        stop(rtmp)
