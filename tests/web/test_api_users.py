"""Profiles, your own account, and the admin's user management."""

from __future__ import annotations

from db import lives
from ingest.gate import PublishGate, Rejected
from tests.web.api_helpers import PASSWORD, Api


async def test_me_and_public_profiles(api: Api) -> None:
    user = await api.make_user("creator")
    c = api.client
    me = (await c.get("/api/users/me", headers=user.auth)).json()
    assert set(me) == {"id", "username", "email", "email_verified", "role", "bio", "avatar_url",
                       "is_active", "created_at"}  # fmt: skip
    r = await c.patch(
        "/api/users/me",
        headers=user.auth,
        json={"bio": "I stream", "avatar_url": "https://img.example.com/a.png"},
    )
    assert (r.json()["bio"], r.json()["avatar_url"]) == (
        "I stream",
        "https://img.example.com/a.png",
    )
    # Fields left out stay as they are; null clears.
    r = await c.patch("/api/users/me", headers=user.auth, json={"avatar_url": None})
    assert (r.json()["bio"], r.json()["avatar_url"]) == ("I stream", None)
    r = await c.patch(
        "/api/users/me",
        headers=user.auth,
        json={"avatar_url": "javascript:alert(1)", "bio": "x" * 2001},
    )
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["error"]["details"]] == ["bio", "avatar_url"]

    profile = (await c.get(f"/api/users/{user.username.upper()}")).json()
    assert profile["username"] == user.username and profile["bio"] == "I stream"
    assert "email" not in profile and "is_active" not in profile
    for missing in ("nobody", "no/such", "x", "a" * 51, "%00abc", f"{user.username}%0A"):
        r = await c.get(f"/api/users/{missing}")
        assert r.status_code == 404, missing
        assert r.headers["content-type"] == "application/json"


async def test_admin_lists_changes_roles_and_deactivates(api: Api) -> None:
    admin = await api.make_user("admin")
    viewer = await api.make_user("viewer", login=True)
    creators = [await api.make_user("creator") for _ in range(3)]
    c = api.client

    page = (await c.get("/api/admin/users", params={"limit": 2}, headers=admin.auth)).json()
    assert [u["id"] for u in page["items"]] == [creators[2].id, creators[1].id]
    rest = (await c.get("/api/admin/users", headers=admin.auth,
                        params={"cursor": page["next_cursor"]})).json()  # fmt: skip
    assert [u["id"] for u in rest["items"]] == [creators[0].id, viewer.id, admin.id]
    only = (await c.get("/api/admin/users", params={"role": "creator", "active": "true"},
                        headers=admin.auth)).json()  # fmt: skip
    assert {u["id"] for u in only["items"]} == {u.id for u in creators}

    # Promotion applies to tokens already issued (the role is read per request).
    r = await c.post("/api/lives", json={"title": "t"}, headers=viewer.auth)
    assert r.status_code == 403
    r = await c.patch(f"/api/admin/users/{viewer.id}", json={"role": "creator"},
                      headers=admin.auth)  # fmt: skip
    assert r.json()["role"] == "creator"
    r = await c.post("/api/lives", json={"title": "t"}, headers=viewer.auth)
    assert r.status_code == 201

    # Deactivation: tokens stop working, refresh is refused, login is refused.
    r = await c.patch(f"/api/admin/users/{viewer.id}", json={"is_active": False},
                      headers=admin.auth)  # fmt: skip
    assert r.status_code == 200 and r.json()["is_active"] is False
    assert (await c.get("/api/users/me", headers=viewer.auth)).status_code == 401
    r = await c.post("/api/auth/refresh", json={"refresh_token": viewer.refresh})
    assert r.status_code == 401
    r = await c.post("/api/auth/login", json={"username": viewer.username, "password": PASSWORD})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"
    assert (await c.get(f"/api/users/{viewer.username}")).status_code == 404
    # Reactivated, the account can log in again (old sessions stay ended).
    await c.patch(f"/api/admin/users/{viewer.id}", json={"is_active": True}, headers=admin.auth)
    assert (await c.get("/api/users/me", headers=viewer.auth)).status_code == 401
    await api.login(viewer.username, PASSWORD)

    # Admins cannot lock themselves out; unknown users are 404.
    for body in ({"is_active": False}, {"role": "viewer"}):
        r = await c.patch(f"/api/admin/users/{admin.id}", json=body, headers=admin.auth)
        assert r.status_code == 409
    r = await c.patch("/api/admin/users/999999", json={"role": "admin"}, headers=admin.auth)
    assert r.status_code == 404
    r = await c.patch(f"/api/admin/users/{viewer.id}", json={"role": "root"}, headers=admin.auth)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "role"


async def test_deactivated_owner_publish_is_refused(api: Api, database_url: str) -> None:
    admin = await api.make_user("admin")
    creator = await api.make_user("creator")
    live = await api.create_live(creator)
    key = (await api.client.get(f"/api/lives/{live['id']}/stream-key",
                                headers=creator.auth)).json()["stream_key"]  # fmt: skip
    await api.client.patch(f"/api/admin/users/{creator.id}", json={"is_active": False},
                           headers=admin.auth)  # fmt: skip
    gate = PublishGate(api.pool, database_url, "live")
    await gate.open()
    try:
        result = await gate.admit("live", key, lambda: None)
    finally:
        await gate.close()
    assert isinstance(result, Rejected) and result.reason == "owner_inactive"
    row = await lives.get_public(api.pool, live["id"])
    assert row is not None and row["status"] == "offline"
