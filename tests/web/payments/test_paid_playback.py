"""Sold lives and videos on /hls, mounted as ``streamd serve`` mounts it (``web.hls`` and
``web.playback.PlaybackGuard``), a real PostgreSQL, files on local disk: the poster stays public,
playlists and segments need a grant cookie whose user still holds a paid order."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.web.api_helpers import Api, MakeApi
from tests.web.payments.test_orders_api import paid_order
from tests.web.test_api_videos import record
from tests.web.test_cdn import KEY, cloudfront_allows
from tests.web.test_vod_playback import app_with_hls, ready_video
from web import playback


async def test_a_sold_live_plays_for_ticket_holders_until_refunded(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(playback, "ACCESS_TTL_S", 0.0)  # every request reads the database
    async with app_with_hls(database_url, tmp_path) as api:
        creator, buyer = await api.make_user("creator"), await api.make_user()
        admin, stranger = await api.make_user("admin"), await api.make_user()
        live = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
        media = api.app.state.settings.media_dir
        files = {
            "master.m3u8": "#EXTM3U\n", "1700000000/poster.jpg": "jpeg",
            "1700000000/source/index.m3u8": "#EXTM3U\n", "1700000000/source/seg_1.m4s": "x",
        }  # fmt: skip
        for name, content in files.items():
            (media / "hls" / str(live["id"]) / name).parent.mkdir(parents=True, exist_ok=True)
            (media / "hls" / str(live["id"]) / name).write_text(content)
        guarded = ("master.m3u8", "1700000000/source/index.m3u8", "1700000000/source/seg_1.m4s")

        async def statuses() -> list[int]:
            return [(await api.client.get(f"/hls/{live['id']}/{p}")).status_code for p in guarded]

        poster = await api.client.get(f"/hls/{live['id']}/1700000000/poster.jpg")
        assert poster.status_code == 200  # a free preview
        assert await statuses() == [403, 403, 403]
        r = await api.client.get(f"/hls/{live['id']}/master.m3u8")
        assert r.json()["error"]["code"] == "playback_forbidden"

        # Without a ticket, no cookie; a cookie of another user or another live opens nothing.
        r = await api.client.post(f"/api/lives/{live['id']}/playback", headers=stranger.auth)
        assert r.status_code == 402 and "set-cookie" not in r.headers
        order = await paid_order(api, buyer, live["id"])
        r = await api.client.post(f"/api/lives/{live['id']}/playback", headers=buyer.auth)
        assert r.status_code == 200
        assert await statuses() == [200, 200, 200]
        r = await api.client.get(f"/hls/{live['id']}/master.m3u8")
        assert r.headers["cache-control"].startswith("private")
        name = playback.cookie_name("live", live["id"])
        token = api.client.cookies.get(name, path=f"/hls/{live['id']}/")
        assert token is not None
        # The same grant for WebRTC playback (WHEP), on its own path.
        assert api.client.cookies.get(name, path=f"/whep/{live['id']}") == token
        api.client.cookies.clear()
        other = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
        (media / "hls" / str(other["id"])).mkdir(parents=True)
        (media / "hls" / str(other["id"]) / "master.m3u8").write_text("#EXTM3U\n")
        api.client.cookies.set(playback.cookie_name("live", other["id"]), token)
        assert (await api.client.get(f"/hls/{other['id']}/master.m3u8")).status_code == 403
        api.client.cookies.clear()
        forged = token.replace(f"{buyer.id}.", f"{stranger.id}.", 1)
        api.client.cookies.set(playback.cookie_name("live", live["id"]), forged)
        assert await statuses() == [403, 403, 403]
        api.client.cookies.clear()

        # The owner plays their own live without a ticket.
        r = await api.client.post(f"/api/lives/{live['id']}/playback", headers=creator.auth)
        assert r.status_code == 200 and await statuses() == [200, 200, 200]
        api.client.cookies.clear()

        # A full refund locks the buyer's cookie out, though it has not expired.
        api.client.cookies.set(playback.cookie_name("live", live["id"]), token)
        assert await statuses() == [200, 200, 200]
        r = await api.client.post(f"/api/orders/{order['id']}/refunds", json={},
                                  headers=admin.auth)  # fmt: skip
        assert r.status_code == 200 and r.json()["status"] == "refunded"
        assert await statuses() == [403, 403, 403]
        api.client.cookies.clear()

        # Made free again: served to anyone.
        r = await api.client.patch(f"/api/lives/{live['id']}", json={"price": None},
                                   headers=creator.auth)  # fmt: skip
        assert r.status_code == 200 and r.json()["price"] is None
        assert await statuses() == [200, 200, 200]


async def test_a_sold_video_plays_for_its_buyers(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(playback, "ACCESS_TTL_S", 0.0)
    async with app_with_hls(database_url, tmp_path) as api:
        creator, buyer = await api.make_user("creator"), await api.make_user()
        video = await ready_video(api, api.app.state.settings.media_dir, creator.id, "public")
        price = {"price": {"amount": 30000, "currency": "TWD"}}
        r = await api.client.patch(f"/api/videos/{video}", headers=creator.auth, json=price)
        assert r.status_code == 200 and r.json()["price"]["display"] == "NT$300"
        path = f"/hls/vod/{video}/run1/360p/seg_1.m4s"
        assert (await api.client.get(path)).status_code == 403
        # Its poster and seek-bar images are its shop window: public.
        media = api.app.state.settings.media_dir
        (media / f"hls/vod/{video}/run1/poster.jpg").write_bytes(b"\xff\xd8")
        assert (await api.client.get(f"/hls/vod/{video}/run1/poster.jpg")).status_code == 200
        # A cookie that is not one (non-ASCII digits included) is a refusal, not an error.
        name = playback.cookie_name("video", video)
        for junk in ("².1.9999999999.x", "1.1.²²².x", "...", "a.b.c.d"):
            r = await api.client.get(path, headers={"Cookie": f"{name}={junk}".encode()})
            assert r.status_code == 403, junk
        r = await api.client.post(f"/api/videos/{video}/playback", headers=buyer.auth)
        assert r.status_code == 402 and r.json()["error"]["details"]["price"]["amount"] == 30000

        r = await api.client.post(
            "/api/orders", headers={**buyer.auth, "Idempotency-Key": "v1"},
            json={"item": {"type": "video", "video_id": video}, "currency": "TWD",
                  "provider": "sandbox"},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        checkout = r.json()["checkout"]["url"]
        token = checkout.split("token=", 1)[1]
        await api.client.post("/sandbox/checkout", data={"token": token, "choice": "pay"})
        r = await api.client.post(f"/api/videos/{video}/playback", headers=buyer.auth)
        assert r.status_code == 200
        assert f"Path=/hls/vod/{video}/" in r.headers["set-cookie"]
        assert (await api.client.get(path)).status_code == 200


async def test_a_sold_live_s_recording_needs_the_live_s_ticket(api: Api) -> None:
    """A recording's files lie in its live's folder, which the live's ticket opens."""
    creator, buyer = await api.make_user("creator"), await api.make_user()
    made = await record(api, creator, "paid show")
    live_id = made["live_id"]
    r = await api.client.patch(f"/api/lives/{live_id}", headers=creator.auth,
                               json={"price": {"amount": 499, "currency": "USD"}})  # fmt: skip
    assert r.status_code == 200
    r = await api.client.post(f"/api/videos/{made['id']}/playback", headers=buyer.auth)
    assert r.status_code == 402 and r.json()["error"]["details"]["price"]["amount"] == 499
    await api.pool.execute("UPDATE lives SET status = 'ended' WHERE id = $1", live_id)
    await paid_order(api, buyer, live_id)
    r = await api.client.post(f"/api/videos/{made['id']}/playback", headers=buyer.auth)
    assert r.status_code == 200
    assert f"streamd_live_{live_id}=" in r.headers["set-cookie"]
    assert f"Path=/hls/{live_id}/" in r.headers["set-cookie"]
    # A recording has no price of its own: its files are the live's.
    price = {"price": {"amount": 100, "currency": "USD"}}
    r = await api.client.patch(f"/api/videos/{made['id']}", headers=creator.auth, json=price)
    assert r.status_code == 409
    r = await api.client.post(
        "/api/orders", headers={**buyer.auth, "Idempotency-Key": "rec"},
        json={"item": {"type": "video", "video_id": made["id"]}, "currency": "USD",
              "provider": "sandbox"},
    )  # fmt: skip
    assert r.status_code == 409


async def test_with_a_signing_cdn_buyers_get_cloudfront_cookies_for_the_live_only(
    make_api: MakeApi, tmp_path: Path
) -> None:
    """The CDN cannot ask PostgreSQL: a buyer also gets CloudFront signed cookies whose policy
    covers this live's prefix on the CDN and nothing else (checked as CloudFront checks them:
    tests/web/test_cdn.py's cloudfront_allows, with the public key)."""
    pem = tmp_path / "cf.pem"
    pem.write_bytes(KEY.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    api = await make_api(cdn_base_url="https://cdn.example.com", cdn_key_pair_id="K2JCJMDEHXQW5F",
                         cdn_private_key=pem)  # fmt: skip
    creator, buyer = await api.make_user("creator"), await api.make_user()
    live = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
    await paid_order(api, buyer, live["id"])
    r = await api.client.post(f"http://app.example.com/api/lives/{live['id']}/playback",
                              headers=buyer.auth)  # fmt: skip
    assert r.status_code == 200
    cookies = {c.name: c.value for c in r.cookies.jar if c.name.startswith("CloudFront-")}
    assert set(cookies) == {"CloudFront-Policy", "CloudFront-Signature", "CloudFront-Key-Pair-Id"}
    assert all(c.domain.lstrip(".") == "example.com" for c in r.cookies.jar
               if c.name.startswith("CloudFront-"))  # fmt: skip
    now = time.time()
    segment = f"https://cdn.example.com/hls/{live['id']}/1700000000/source/seg_1.m4s"
    assert cloudfront_allows(segment, now, cookies=cookies)
    other = f"https://cdn.example.com/hls/{live['id'] + 1}/1700000000/source/seg_1.m4s"
    assert not cloudfront_allows(other, now, cookies=cookies)


async def test_while_the_database_is_down_hls_answers_what_it_last_knew(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A free live keeps playing through a database outage (the guard's last answer), a sold
    one stays locked, and an item never seen is a 503 to retry, not a guess."""
    monkeypatch.setattr(playback, "ACCESS_TTL_S", 0.0)  # every request would read the database
    async with app_with_hls(database_url, tmp_path) as api:
        creator = await api.make_user("creator")
        free = await api.create_live(creator)
        sold = await api.create_live(creator, price={"amount": 499, "currency": "USD"})
        never = await api.create_live(creator)
        media = api.app.state.settings.media_dir
        for live in (free, sold, never):
            (media / "hls" / str(live["id"])).mkdir(parents=True)
            (media / "hls" / str(live["id"]) / "master.m3u8").write_text("#EXTM3U\n")
        assert (await api.client.get(f"/hls/{free['id']}/master.m3u8")).status_code == 200
        assert (await api.client.get(f"/hls/{sold['id']}/master.m3u8")).status_code == 403
        await api.app.state.db.read.close()  # the database goes away
        assert (await api.client.get(f"/hls/{free['id']}/master.m3u8")).status_code == 200
        assert (await api.client.get(f"/hls/{sold['id']}/master.m3u8")).status_code == 403
        r = await api.client.get(f"/hls/{never['id']}/master.m3u8")
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
