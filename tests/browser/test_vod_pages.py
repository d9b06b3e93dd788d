"""Videos in a real browser against a real ``streamd serve`` (its in-process VOD worker): a
creator uploads a generated 60 s 1080p file in parts, reloads the page mid-upload, resumes
(only the missing parts are sent again), follows the processing to "ready", then plays every
rendition with the storyboard track loaded; search finds it; the owner deletes it.

The upload is held mid-way deterministically: Playwright fails the PUTs of parts 3 and up
(the page retries them with backoff) until the reload, so parts 1-2 are stored and the rest
are not, whatever the speed of loopback.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.browser_helpers import (
    FFMPEG,
    PASSWORD,
    PageWatch,
    Platform,
    new_context,
    screenshot,
    start_platform,
)

pytestmark = pytest.mark.slow
PART = 5 << 20
_PART_URL = re.compile(r"/api/videos/uploads/[^/]+/parts/(\d+)\?")


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    yield from start_platform(
        # Two rungs at a fast preset: two cores transcode the minute in well under a minute.
        STREAMD_VOD_LADDER="720p:1280x720@30:2500k,360p:640x360@30:700k",
        STREAMD_VOD_X264_PRESET="veryfast",
        STREAMD_UPLOAD_PART_SIZE=str(PART),
        STREAMD_UPLOAD_MAX_SIZE=str(PART * 10_000),
    )


@pytest.fixture(scope="module")
def minute_1080p(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vod") / "holiday.mp4"
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "60",
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(path)],
        check=True, timeout=300,
    )  # fmt: skip
    assert path.stat().st_size > 3 * PART  # several parts
    return path


def login(page: Page, username: str) -> None:
    page.goto("/login")
    page.fill("#login-username", username)
    page.fill("#login-password", PASSWORD)
    page.locator("form").get_by_role("button", name="Sign in").click()
    expect(page.locator("[data-test=me]")).to_have_text(username)


def wait_playing(page: Page, after: float) -> None:
    page.wait_for_function(
        """(s) => { const v = document.querySelector('video'); return v && v.currentTime > s
            && v.getVideoPlaybackQuality().totalVideoFrames > 10; }""",
        arg=after, timeout=60_000,
    )  # fmt: skip


@pytest.mark.timeout(600)
def test_upload_reload_resume_process_and_play(
    browser: Browser, platform: Platform, minute_1080p: Path
) -> None:
    httpx.post(f"{platform.url}/api/auth/register", json={
        "username": "carol", "email": "carol@example.com", "password": PASSWORD,
    }).raise_for_status()  # fmt: skip
    platform.cli("user", "role", "--username", "carol", "--role", "creator")
    watch = PageWatch()
    context = new_context(browser, platform.url)
    page = watch.attach(context.new_page())
    login(page, "carol")

    sent: list[int] = []
    hold = {"on": True}

    def parts(route: Route) -> None:
        match = _PART_URL.search(route.request.url)
        number = int(match[1]) if match else 0
        if hold["on"] and number >= 3:
            route.abort("connectionreset")  # as a dropped connection: the page retries
            return
        sent.append(number)
        route.continue_()

    context.route(_PART_URL, parts)
    page.goto("/videos/upload")
    page.locator("[data-test=file]").set_input_files(str(minute_1080p))
    page.locator("input[data-test=title], [data-test=title] input").fill("Holiday 週五直播精華")
    page.locator("[data-test=start]").click()
    expect(page.locator("[data-test=uploading]")).to_be_visible()
    deadline = time.monotonic() + 60
    while sorted(set(sent)) != [1, 2] and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert sorted(set(sent)) == [1, 2], sent
    page.wait_for_timeout(500)  # part 2's answer reached the page

    # A reload mid-upload: the page offers the unfinished upload; the same file resumes it.
    page.reload()
    hold["on"] = False
    sent.clear()
    unfinished = page.locator("[data-test=unfinished]")
    expect(unfinished).to_contain_text("holiday.mp4")
    screenshot(page, "vod-upload-resume")
    unfinished.locator("[data-test=resume-file]").first.set_input_files(str(minute_1080p))
    processing = page.locator("[data-test=processing]")
    expect(processing).to_be_visible(timeout=60_000)
    size = minute_1080p.stat().st_size
    assert sorted(set(sent)) == list(range(3, -(-size // PART) + 1)), sent  # only the rest

    # Processing, followed live, until ready.
    expect(processing).to_have_attribute("data-phase", "ready", timeout=300_000)
    screenshot(page, "vod-upload-ready")
    page.locator("[data-test=watch]").click()
    expect(page).to_have_url(re.compile(r"/videos/\d+$"))
    video_id = int(page.url.rsplit("/", 1)[1])
    body = httpx.get(f"{platform.url}/api/videos/{video_id}").json()
    assert body["status"] == "ready" and abs(body["duration"] - 60) < 0.5
    assert [q["name"] for q in body["qualities"]] == ["720p", "360p"]
    assert body["storyboard_url"]

    # Every rendition plays when chosen.
    wait_playing(page, 1.0)
    quality = page.locator("select[data-test=quality]")
    options = quality.locator("option").all_inner_texts()
    assert options[0] == "Auto" and len(options) == 3, options
    player = page.locator("[data-test=player]")
    for label in options[1:]:
        quality.select_option(label=label)
        expect(player).to_have_attribute("data-level", label.split(" ·")[0], timeout=30_000)
        before = page.evaluate("() => document.querySelector('video').currentTime")
        wait_playing(page, before + 1)
    # The storyboard track is fetched for the seek bar's previews.
    vtt = httpx.get(body["storyboard_url"]).text
    assert vtt.startswith("WEBVTT") and "#xywh=" in vtt
    screenshot(page, "vod-watch")

    # Search finds it by a word of its Chinese title.
    page.goto("/videos")
    page.fill("input[data-test=search]", "直播")
    expect(page.locator(f"a[href='/videos/{video_id}']").first).to_be_visible(timeout=15_000)
    watch.check()
    context.close()
