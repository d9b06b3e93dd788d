"""Payments in a real browser against a real ``streamd serve`` with its default settings (the
sandbox provider): a creator sells tickets to a live that a real ffmpeg publishes; a viewer
meets the paywall, buys a ticket through the sandbox's hosted page, comes back to the order
page and watches (frames decoded); posts and tips in chat; an admin refunds the order from its
page and the viewer finds the live locked again, down to /hls refusing the playlist."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.browser_helpers import (
    PASSWORD,
    PageWatch,
    Platform,
    new_context,
    publisher,
    screenshot,
)
from tests.browser.test_web_app import confirm_dialog, login, wait_playing

pytestmark = pytest.mark.slow


def hls_status(page: Page, live_id: int) -> int:
    """What /hls answers this browser (its cookies) for the live's master playlist."""
    status = page.evaluate(
        "async (id) => (await fetch(`/hls/${id}/master.m3u8`, {cache: 'no-store'})).status",
        live_id,
    )
    assert isinstance(status, int)
    return status


@pytest.mark.timeout(600)
def test_buy_a_ticket_watch_tip_and_lose_it_on_refund(browser: Browser, platform: Platform) -> None:
    watch = PageWatch()
    platform.cli("user", "create", "--username", "dana", "--email", "dana@example.com",
                 "--password-stdin", "--role", "creator", stdin=PASSWORD + "\n")  # fmt: skip
    api = httpx.Client(base_url=platform.url)
    token = api.post("/api/auth/login", json={"username": "dana", "password": PASSWORD})
    creator = {"Authorization": f"Bearer {token.json()['access_token']}"}
    live = api.post("/api/lives", headers=creator, json={
        "title": "Paid concert", "price": {"amount": 499, "currency": "USD"}}).json()  # fmt: skip
    live_id = live["id"]
    key = api.get(f"/api/lives/{live_id}/stream-key", headers=creator).json()["stream_key"]
    api.post("/api/auth/register", json={
        "username": "erin", "email": "erin@example.com", "password": PASSWORD,
    }).raise_for_status()  # fmt: skip

    ffmpeg = publisher(f"rtmp://127.0.0.1:{platform.rtmp_port}/live/{key}", seconds=240)
    try:
        viewer_ctx = new_context(browser, platform.url)
        viewer = watch.attach(viewer_ctx.new_page())
        # Signed out: the poster and title, a price, and a sign-in prompt; no player.
        viewer.goto(f"/lives/{live_id}")
        paywall = viewer.locator("[data-test=paywall]")
        expect(paywall).to_have_attribute("data-state", "sign_in")
        expect(viewer.locator("[data-test=paywall-price]")).to_have_text("US$4.99")
        login(viewer, "erin")
        viewer.goto(f"/lives/{live_id}")
        expect(paywall).to_have_attribute("data-state", "locked")
        expect(viewer.locator("video")).to_have_count(0)
        assert hls_status(viewer, live_id) == 403
        expect(viewer.locator("[data-test=chat-ticket-required]")).to_be_visible()
        screenshot(viewer, "paywall")

        # Buy: the checkout page, then the sandbox's hosted page, then back to the order.
        viewer.locator("[data-test=buy-button]").click()
        expect(viewer).to_have_url(re.compile(r"/payments/create\?"))
        expect(viewer.locator("[data-test=price]")).to_have_text("US$4.99")
        expect(viewer.locator("[data-test=providers] [data-provider=sandbox]")).to_be_visible()
        viewer.locator("[data-test=pay-button]").click()
        expect(viewer).to_have_url(re.compile(r"/sandbox/checkout\?token="))
        expect(viewer.locator("[data-test=sandbox-amount]")).to_have_text("US$4.99")
        viewer.locator("[data-test=sandbox-pay]").click()
        expect(viewer).to_have_url(re.compile(r"/payments/\d+\?return=1$"))
        order_id = int(re.findall(r"/payments/(\d+)", viewer.url)[0])
        expect(viewer.locator("[data-test=order]")).to_have_attribute("data-status", "paid")
        screenshot(viewer, "order-paid")
        viewer.locator("[data-test=watch-link]").click()
        expect(viewer).to_have_url(re.compile(rf"/lives/{live_id}$"))
        wait_playing(viewer)
        assert hls_status(viewer, live_id) == 200

        # With the ticket, chat; and a tip that everyone sees highlighted.
        viewer.fill("[data-test=chat-input]", "worth every cent")
        viewer.keyboard.press("Enter")
        expect(viewer.locator("[data-test=chat-lines]")).to_contain_text("worth every cent")
        viewer.locator("[data-test=tip-button]").click()
        expect(viewer).to_have_url(re.compile(r"/payments/create\?.*type=tip"))
        viewer.fill("#tip-amount", "2.50")
        viewer.fill("#tip-message", "encore!")
        viewer.locator("[data-test=pay-button]").click()
        viewer.locator("[data-test=sandbox-pay]").click()
        expect(viewer.locator("[data-test=order]")).to_have_attribute("data-status", "paid")
        viewer.goto(f"/lives/{live_id}")
        tip = viewer.locator("[data-test=chat-tip]").last
        expect(tip).to_contain_text("US$2.50")
        expect(tip).to_contain_text("encore!")

        # An admin refunds the ticket in full from the order page.
        admin_ctx = new_context(browser, platform.url)
        admin = watch.attach(admin_ctx.new_page())
        login(admin, "root")
        admin.goto(f"/payments/{order_id}")
        expect(admin.locator("[data-test=order]")).to_have_attribute("data-status", "paid")
        admin.locator("[data-test=refund-button]").click()
        confirm_dialog(admin)
        expect(admin.locator("[data-test=order]")).to_have_attribute("data-status", "refunded")
        expect(admin.locator("[data-test=order-refunded]")).to_have_text("US$4.99")
        admin_ctx.close()

        # The viewer's cookie no longer opens /hls (within the entitlement cache's seconds),
        # and the page shows the paywall again.
        viewer.wait_for_function(
            "async (id) => (await fetch(`/hls/${id}/master.m3u8`, {cache: 'no-store'})).status"
            " === 403", arg=live_id, timeout=15_000,
        )  # fmt: skip
        viewer.reload()
        expect(viewer.locator("[data-test=paywall]")).to_have_attribute("data-state", "locked")
        viewer.goto("/payments")
        expect(viewer.locator(f"[data-order-id='{order_id}']")).to_contain_text("US$4.99")
        viewer_ctx.close()
    finally:
        ffmpeg.kill()
        ffmpeg.communicate()
        api.close()
    watch.check()
    mail = platform.cli("mail", "show", "--to", "erin@example.com", "--kind", "refund_receipt")
    assert "US$4.99" in mail.stdout
