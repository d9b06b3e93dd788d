"""LL-HLS in headless Chromium: the watch page's hls.js (lowLatencyMode, as the app sets it for
lives) plays a live for three minutes without a stall, with blocking playlist reloads and parts,
close to the live edge, switching rendition on the way; then the publisher drops for 4 s and
comes back inside the reconnect window, and playback goes on (that the timeline has no hole is
asserted on the segments, in tests/packager/hls/test_low_latency.py: hls.js runs dry during
the outage and may nudge its playhead once while it recovers, so a seek here proves nothing).
Nothing is mocked: ``streamd serve`` (LL-HLS is its default), embedded PostgreSQL, ffmpeg over
RTMP; the test watches only the DOM, the network and the media element."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.browser.browser_helpers import (
    PageWatch,
    Platform,
    new_context,
    publisher,
    start_platform,
)

pytestmark = pytest.mark.slow

PLAY_SECONDS = 180

# Media element events after playback started; "seeking" is hls.js jumping a hole (or the
# app's go-live button, which nobody presses here).
MEDIA_HOOK = """
window.__media = {waiting: 0, seeking: 0, started: false};
new MutationObserver(() => document.querySelectorAll('video').forEach((v) => {
  if (v.__hooked) return;
  v.__hooked = true;
  v.addEventListener('playing', () => { window.__media.started = true; });
  v.addEventListener('waiting', () => { if (window.__media.started) window.__media.waiting++; });
  v.addEventListener('seeking', () => { if (window.__media.started) window.__media.seeking++; });
})).observe(document, {childList: true, subtree: true});
"""


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    yield from start_platform(
        STREAMD_HLS_LADDER="240p:426x240@30:400k",
        STREAMD_HLS_RECONNECT_WINDOW="15",
    )


def media(page: Page) -> dict[str, int]:
    return dict(page.evaluate("() => window.__media"))


def current_time(page: Page) -> float:
    return float(page.evaluate("() => document.querySelector('video').currentTime"))


def behind_edge(page: Page) -> float:
    """Seconds between the playhead and the end of what the playlist lists."""
    return float(page.evaluate(
        "() => { const v = document.querySelector('video');"
        " return v.seekable.length ? v.seekable.end(v.seekable.length - 1) - v.currentTime : 99 }"
    ))  # fmt: skip


@pytest.mark.timeout(PLAY_SECONDS + 200)
def test_hls_js_low_latency_plays_three_minutes_switches_and_rides_a_reconnect(
    browser: Browser, platform: Platform
) -> None:
    live = json.loads(platform.cli("live", "create", "--user", "root", "--title", "ll").stdout)
    rtmp = f"rtmp://127.0.0.1:{platform.rtmp_port}/live/{live['stream_key']}"
    first = publisher(rtmp, PLAY_SECONDS + 60)
    second = None
    context = new_context(browser, platform.url)
    context.add_init_script(MEDIA_HOOK)
    watch = PageWatch()
    requests: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while httpx.get(f"{platform.url}/api/lives/{live['id']}").json()["status"] != "live":
            assert time.monotonic() < deadline, "the live never went on air"
            time.sleep(0.2)
        time.sleep(3)  # a segment and a few parts out
        page = watch.attach(context.new_page())
        page.on("request", lambda r: requests.append(_path(r)))
        page.goto(f"/lives/{live['id']}")
        page.wait_for_function("() => window.__media.started", timeout=60_000)
        time.sleep(10)  # settled at its target latency
        start_time, started_at = current_time(page), time.monotonic()
        behind = []
        quality = page.locator("select[data-test=quality]")
        player = page.locator("[data-test=player]")
        switched = False
        while time.monotonic() - started_at < PLAY_SECONDS:
            time.sleep(5)
            behind.append(behind_edge(page))
            if not switched and time.monotonic() - started_at > PLAY_SECONDS / 2:
                quality.select_option(label="240p")  # a viewer picks the rung mid-way
                expect(player).to_have_attribute("data-level", "240p", timeout=20_000)
                switched = True
        played = current_time(page) - start_time
        elapsed = time.monotonic() - started_at
        events = media(page)
        assert events == {"waiting": 0, "seeking": 0, "started": True}, events
        assert played > elapsed - 2, (played, elapsed)  # real time all along
        # Low latency: blocking reloads and parts, and the playhead near the edge.
        assert any("_HLS_msn=" in p and "_HLS_part=" in p for p in requests)
        assert sum("/part_" in p for p in requests) > PLAY_SECONDS  # ~3 a second
        assert sorted(behind)[len(behind) // 2] < 3.0, behind
        # Both renditions' parts were fetched.
        assert any("/240p/part_" in p for p in requests)
        assert any("/source/part_" in p for p in requests)

        # The publisher drops for 4 s and comes back: the broadcast goes on (one
        # discontinuity), and the player with it.
        first.kill()
        first.wait()
        time.sleep(4)
        second = publisher(rtmp, 60)
        before = current_time(page)
        time.sleep(20)
        assert current_time(page) > before + 10
        watch.check()
    finally:
        context.close()
        for proc in (first, second):
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                if proc.stderr is not None:
                    proc.stderr.close()


def _path(request: Request) -> str:
    return request.url.split("//", 1)[-1].split("/", 1)[-1]
