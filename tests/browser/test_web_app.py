"""The web app in a real browser against a real ``streamd serve``: a streamer signs up, is made a
creator by an admin, goes live with a real ffmpeg publisher using the settings the studio shows,
and a viewer watches (frames decoded, every rendition chosen), chats both ways and sees the end.
Also: the refresh cookie across reloads, sign-out, route guards, both languages complete,
accessibility (axe-core) and phone-width screenshots (written to ``var/test-artifacts``)."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.browser_helpers import (
    PASSWORD,
    PageWatch,
    Platform,
    axe_violations,
    new_context,
    publisher,
    screenshot,
)

pytestmark = pytest.mark.slow
AT_LEAST_2 = re.compile(r"^([2-9]|\d\d+)$")
AT_LEAST_3 = re.compile(r"^([3-9]|\d\d+)$")


def register(page: Page, username: str) -> None:
    page.goto("/register")
    page.fill("#reg-username", username)
    page.fill("#reg-email", f"{username}@example.com")
    page.fill("#reg-password", PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/dashboard"))
    expect(page.locator("[data-test=me]")).to_have_text(username)


def login(page: Page, username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("#login-username", username)
    page.fill("#login-password", password)
    page.locator("form").get_by_role("button", name="Sign in").click()
    expect(page.locator("[data-test=me]")).to_have_text(username)


def confirm_dialog(page: Page) -> None:
    page.locator(".el-message-box__btns .el-button--primary").click()


def assert_accessible(page: Page, name: str) -> None:
    violations = axe_violations(page)
    assert not violations, f"{name}: {violations}"


def wait_playing(page: Page, seconds: float = 1.5) -> None:
    """The video element's clock advances and frames were decoded."""
    page.wait_for_function(
        """(s) => { const v = document.querySelector('video'); return v && v.currentTime > s
            && v.getVideoPlaybackQuality().totalVideoFrames > 10; }""",
        arg=seconds, timeout=60_000,
    )  # fmt: skip


@pytest.mark.timeout(600)
def test_sign_up_go_live_watch_chat_and_stop(browser: Browser, platform: Platform) -> None:
    watch = PageWatch()
    streamer_ctx = new_context(browser, platform.url)
    streamer = watch.attach(streamer_ctx.new_page())

    # Sign up, confirm the address with the mailed link.
    register(streamer, "alice")
    expect(streamer.get_by_text("Please confirm your email address")).to_be_visible()
    streamer.goto(platform.mail_link("alice@example.com", "verify_email"))
    expect(streamer.locator("[data-test=verified]")).to_be_visible()

    # An admin (made with the CLI) makes alice a creator on the users page.
    admin_ctx = new_context(browser, platform.url)
    admin = watch.attach(admin_ctx.new_page())
    login(admin, "root")
    admin.goto("/admin/users")
    admin.locator("tr[data-username=alice] select[data-test=role]").select_option("creator")
    expect(admin.get_by_text("alice is now: Creator")).to_be_visible()
    admin_ctx.close()

    # Create a live; the studio shows what to paste into OBS.
    streamer.goto("/dashboard")
    streamer.get_by_role("link", name="Go live").first.click()
    expect(streamer).to_have_url(re.compile(r"/lives/create$"))
    streamer.fill("#live-title", "Friday <b>stream</b>")
    streamer.get_by_role("button", name="Create live").click()
    expect(streamer).to_have_url(re.compile(r"/lives/\d+/stream$"))
    live_id = int(streamer.url.rstrip("/").split("/")[-2])
    server = streamer.locator("[data-test=server]").inner_text()
    assert server.startswith("rtmp://"), server
    key_field = streamer.locator("[data-test=stream-key]")
    assert "•" in key_field.inner_text()  # hidden until revealed
    streamer.locator("[data-test=reveal]").click()
    key = key_field.inner_text()
    assert "•" not in key and len(key) > 16
    assert_accessible(streamer, "studio (offline)")

    # A real ffmpeg publishes to exactly what the studio showed.
    ffmpeg = publisher(f"{server}/{key}", seconds=150)
    try:
        expect(streamer.locator(".studio")).to_have_attribute("data-status", "live", timeout=30_000)
        bitrate = streamer.locator("[data-test=chart-bitrate]")
        expect(bitrate).to_have_attribute("data-points", AT_LEAST_3, timeout=30_000)
        assert float(bitrate.get_attribute("data-value") or 0) > 200
        fps = float(streamer.locator("[data-test=chart-fps]").get_attribute("data-value") or 0)
        assert 20 < fps < 40, fps
        keyframes = streamer.locator("[data-test=chart-keyframes]").get_attribute("data-value")
        assert keyframes and 1.5 <= float(keyframes) <= 2.5, keyframes
        audio = streamer.locator("[data-test=chart-audio]")
        assert audio.get_attribute("data-value") == "1"  # present
        expect(streamer.locator("[data-test=keyframe-hint]")).to_have_count(0)
        points = int(bitrate.get_attribute("data-points") or 0)
        expect(bitrate).not_to_have_attribute("data-points", str(points), timeout=15_000)  # moving

        # A viewer signs in and watches.
        httpx.post(f"{platform.url}/api/auth/register", json={
            "username": "bob", "email": "bob@example.com", "password": PASSWORD,
        }).raise_for_status()  # fmt: skip
        viewer_ctx = new_context(browser, platform.url)
        viewer = watch.attach(viewer_ctx.new_page())
        login(viewer, "bob")
        viewer.goto(f"/lives/{live_id}")
        # The title is text, not markup.
        expect(viewer.locator("h1.title")).to_have_text("Friday <b>stream</b>")
        wait_playing(viewer)

        # The quality menu lists Auto and every rendition; each one plays when chosen.
        quality = viewer.locator("select[data-test=quality]")
        options = quality.locator("option").all_inner_texts()
        assert options[0] == "Auto" and len(options) == 4, options
        player = viewer.locator("[data-test=player]")
        for label in options[1:]:
            quality.select_option(label=label)
            expect(player).to_have_attribute("data-level", label.split(" ·")[0], timeout=30_000)
            before = viewer.evaluate("() => document.querySelector('video').currentTime")
            wait_playing(viewer, before + 1)
        quality.select_option(label="Auto")

        # Chat both ways.
        viewer.fill("[data-test=chat-input]", "hello from bob")
        viewer.keyboard.press("Enter")
        expect(streamer.locator("[data-test=chat-lines]")).to_contain_text("hello from bob")
        streamer.fill("[data-test=chat-input]", "welcome, <i>bob</i>")
        streamer.keyboard.press("Enter")
        lines = viewer.locator("[data-test=chat-lines]")
        expect(lines).to_contain_text("welcome, <i>bob</i>")
        assert lines.locator("i").count() == 0

        # Viewer count reaches 2 (the two of them, at least).
        count = viewer.locator("[data-test=viewer-count]")
        expect(count).to_have_attribute("data-count", AT_LEAST_2, timeout=30_000)
        assert_accessible(viewer, "watch page")
        assert_accessible(streamer, "studio (live)")

        # Phone-width screenshots while on air.
        phone = new_context(browser, platform.url, width=390, height=844)
        phone_page = watch.attach(phone.new_page())
        phone_page.goto("/")
        expect(phone_page.locator(f"[data-live-id='{live_id}']")).to_be_visible()
        screenshot(phone_page, "home-390")
        phone_page.goto(f"/lives/{live_id}")
        wait_playing(phone_page)
        screenshot(phone_page, "watch-390")
        login(phone_page, "alice")
        phone_page.goto(f"/lives/{live_id}/stream")
        expect(phone_page.locator("[data-test=chart-bitrate]")).to_have_attribute(
            "data-points", re.compile(r"^\d+$"))  # fmt: skip
        phone_page.wait_for_timeout(1500)
        screenshot(phone_page, "studio-390")
        phone.close()

        # The streamer ends the stream; the viewer's page says so.
        streamer.locator("[data-test=stop]").click()
        confirm_dialog(streamer)
        studio = streamer.locator(".studio")
        expect(studio).to_have_attribute("data-status", "ended", timeout=20_000)
        expect(viewer.locator(".watch")).to_have_attribute("data-status", "ended", timeout=20_000)
        expect(viewer.get_by_text("This live has ended.")).to_be_visible()
        viewer_ctx.close()
    finally:
        ffmpeg.kill()
        ffmpeg.communicate()
    streamer_ctx.close()
    watch.check()


def refresh_cookie(page: Page) -> str | None:
    cookies = page.context.cookies()
    return next((c["value"] for c in cookies if c["name"] == "streamd_refresh"), None)


@pytest.mark.timeout(300)
def test_refresh_cookie_rotates_across_reloads_and_guards_redirect(
    browser: Browser, platform: Platform
) -> None:
    watch = PageWatch()
    context = new_context(browser, platform.url)
    page = watch.attach(context.new_page())
    login(page, "root")
    cookie = next(c for c in context.cookies() if c["name"] == "streamd_refresh")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/api/auth"
    assert page.evaluate("() => document.cookie").find("streamd_refresh") == -1
    first = cookie["value"]
    # Nothing of the session in web storage: the access token lives in memory only.
    stored = page.evaluate("() => JSON.stringify({...localStorage, ...sessionStorage})")
    assert "ey" not in stored, stored

    page.reload()
    expect(page.locator("[data-test=me]")).to_have_text("root")
    second = refresh_cookie(page)
    assert second and second != first  # rotated by the reload's refresh
    page.goto("/profile")
    expect(page.locator("h1")).to_have_text("Profile")

    # Signing out ends the session and the cookie; protected pages send to login with next.
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.locator("[data-test=me]")).to_have_count(0)
    assert refresh_cookie(page) is None
    page.goto("/dashboard")
    expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)dashboard$"))
    page.reload()
    expect(page.locator("[data-test=me]")).to_have_count(0)

    # Signing in follows next; a viewer is kept out of admin pages.
    httpx.post(f"{platform.url}/api/auth/register", json={
        "username": "carol", "email": "carol@example.com", "password": PASSWORD,
    }).raise_for_status()  # fmt: skip
    page.goto("/admin/users")
    expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)admin(%2F|/)users$"))
    page.fill("#login-username", "carol")
    page.fill("#login-password", PASSWORD)
    page.locator("form").get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/forbidden"))

    # A session ended elsewhere: the next API call fails to refresh and goes to login.
    page.goto("/lives")
    expect(page.locator("[data-test=me]")).to_have_text("carol")
    other = httpx.post(f"{platform.url}/api/auth/login",
                       json={"username": "carol", "password": PASSWORD}).json()  # fmt: skip
    bearer = {"Authorization": f"Bearer {other['access_token']}"}
    httpx.post(f"{platform.url}/api/auth/logout", json={"everywhere": True},
               headers=bearer).raise_for_status()  # fmt: skip
    page.get_by_role("link", name="Dashboard").click()
    expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)dashboard"), timeout=15_000)

    # Unknown paths are the app's own 404 page.
    page.goto("/no/such/page")
    expect(page.locator("[data-test=not-found]")).to_be_visible()
    context.close()
    watch.check()


PAGES = ["/", "/login", "/register", "/lives", "/forgot-password", "/reset-password?token=x",
         "/verify-email", "/no-such-page"]  # fmt: skip
SIGNED_IN_PAGES = ["/dashboard", "/profile", "/admin/users", "/lives/create"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("locale", "sign_in", "lang"), [
    ("zh-TW", "登入", "zh-TW"), ("en-US", "Sign in", "en"),
])  # fmt: skip
def test_every_page_renders_in_both_languages_with_no_missing_key(
    browser: Browser, platform: Platform, locale: str, sign_in: str, lang: str
) -> None:
    watch = PageWatch()
    context = new_context(browser, platform.url, locale=locale)
    page = watch.attach(context.new_page())
    for path in PAGES:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("() => document.documentElement.lang") == lang
    expect(page.get_by_role("link", name=sign_in, exact=True)).to_be_visible()
    page.goto("/login")
    page.fill("#login-username", "root")
    page.fill("#login-password", PASSWORD)
    page.locator("form button[type=submit]").click()
    expect(page.locator("[data-test=me]")).to_have_text("root")
    for path in SIGNED_IN_PAGES:
        page.goto(path)
        page.wait_for_load_state("networkidle")
    # Switching the language in the page re-renders without a reload, and is remembered.
    other = "en" if lang == "zh-TW" else "zh-TW"
    page.select_option("#locale-select", other)
    assert page.evaluate("() => document.documentElement.lang") == other
    page.reload()
    assert page.evaluate("() => document.documentElement.lang") == other
    context.close()
    watch.check()


@pytest.mark.timeout(300)
def test_home_and_login_pass_axe_and_work_at_phone_width(
    browser: Browser, platform: Platform
) -> None:
    watch = PageWatch()
    for width in (1440, 390):
        context = new_context(browser, platform.url, width=width)
        page = watch.attach(context.new_page())
        for path in ("/", "/login", "/register", "/lives"):
            page.goto(path)
            page.wait_for_load_state("networkidle")
            assert_accessible(page, f"{path} at {width}px")
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways at {width}px"
        # Keyboard: the first Tab reaches the skip link, which moves focus to the content.
        page.goto("/login")
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.className") == "skip-link"
        context.close()
    watch.check()
