"""The authorization matrix: every mutating or owner-only endpoint, called by the wrong person.

- another user's resource: 403 where the resource is public anyway (the live exists for all to
  see), 404 where an answer would reveal a secret (stream key, ingest settings);
- a viewer's token on creator endpoints (creating a live, and the stream key and ingest
  settings even of its own lives), a creator's on admin endpoints: 403, whichever resource;
- no token: 401.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.api_helpers import Api, User
from web.app import ENDPOINTS

# (method, path template, body, status for a stranger who is a creator)
LIVE_CALLS: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("PATCH", "/api/lives/{id}", {"title": "hijacked"}, 403),
    ("DELETE", "/api/lives/{id}", None, 403),
    ("POST", "/api/lives/{id}/stop", None, 403),
    ("GET", "/api/lives/{id}/health", None, 403),
    ("GET", "/api/lives/{id}/stream-key", None, 404),
    ("POST", "/api/lives/{id}/stream-key/rotate", None, 404),
    ("GET", "/api/lives/{id}/ingest", None, 404),
]


async def _call(api: Api, method: str, path: str, user: User | None,
                body: dict[str, Any] | None = None) -> int:  # fmt: skip
    headers = user.auth if user else {}
    r = await api.client.request(method, path, json=body, headers=headers)
    assert r.status_code == 204 or r.headers["content-type"] == "application/json"
    return r.status_code


def test_the_matrix_covers_every_owner_endpoint() -> None:
    # Chat endpoints (/chat/..., /heartbeat) have their own matrix: tests/chat/test_authz.py;
    # /playback is every viewer's (tests/web/payments/test_paid_playback.py).
    templated = {(e.method, e.path.replace("{live_id:int}", "{id}")) for e in ENDPOINTS
                 if ((e.path.startswith("/api/lives/{") and e.method != "GET") or
                     e.path.endswith(("/stream-key", "/ingest", "/health")))
                 and "/chat/" not in e.path
                 and not e.path.endswith(("/heartbeat", "/playback"))}  # fmt: skip
    assert templated == {(m, p) for m, p, _, _ in LIVE_CALLS}


@pytest.mark.parametrize(("method", "path", "body", "status"), LIVE_CALLS)
async def test_another_users_live(
    api: Api, method: str, path: str, body: dict[str, Any] | None, status: int
) -> None:
    owner = await api.make_user("creator")
    stranger = await api.make_user("creator")
    viewer = await api.make_user("viewer")
    live = await api.create_live(owner, title="mine")
    url = path.format(id=live["id"])
    assert await _call(api, method, url, stranger, body) == status
    # The key endpoints need a role that may stream: a viewer is refused before any lookup.
    by_role = 403 if path.endswith(("/stream-key", "/rotate", "/ingest")) else status
    assert await _call(api, method, url, viewer, body) == by_role
    assert await _call(api, method, url, None, body) == 401
    # Nothing changed: the owner still sees the same live and key.
    got = (await api.client.get(f"/api/lives/{live['id']}")).json()
    assert got["title"] == "mine" and got["status"] == "offline"
    # A live id that does not exist is a 404 for everyone.
    assert await _call(api, method, path.format(id=live["id"] + 1000), owner, body) == 404
    assert await _call(api, method, path.format(id=2**63), owner, body) == 404
    # The owner may.
    assert await _call(api, method, url, owner, body) in (200, 204)


@pytest.mark.parametrize(("method", "path", "body", "status"), LIVE_CALLS)
async def test_admin_manages_but_never_sees_keys(
    api: Api, method: str, path: str, body: dict[str, Any] | None, status: int
) -> None:
    owner = await api.make_user("creator")
    admin = await api.make_user("admin")
    live = await api.create_live(owner)
    expected = 404 if status == 404 else (200, 204)
    got = await _call(api, method, path.format(id=live["id"]), admin, body)
    assert got == expected if isinstance(expected, int) else got in expected


async def test_role_gates(api: Api) -> None:
    viewer = await api.make_user("viewer")
    creator = await api.make_user("creator")
    admin = await api.make_user("admin")
    assert await _call(api, "POST", "/api/lives", viewer, {"title": "t"}) == 403
    assert await _call(api, "POST", "/api/lives", creator, {"title": "t"}) == 201
    assert await _call(api, "POST", "/api/lives", admin, {"title": "t"}) == 201
    for user in (viewer, creator):
        assert await _call(api, "GET", "/api/admin/users", user) == 403
        assert await _call(api, "PATCH", f"/api/admin/users/{viewer.id}", user,
                           {"role": "admin"}) == 403  # fmt: skip
    assert await _call(api, "GET", "/api/admin/users", None) == 401
    me = (await api.client.get("/api/users/me", headers=viewer.auth)).json()
    assert me["role"] == "viewer"  # nobody above escalated


KEY_CALLS = [("GET", "/stream-key"), ("POST", "/stream-key/rotate"), ("GET", "/ingest")]


async def test_key_endpoints_need_a_role_that_may_stream(api: Api) -> None:
    # The owner demoted to viewer keeps its lives, but not its keys: whoever holds a key can
    # publish with it, so handing one out needs the role the ingest gate admits.
    owner = await api.make_user("creator")
    admin = await api.make_user("admin")
    live = await api.create_live(owner)
    base = f"/api/lives/{live['id']}"
    key = (await api.client.get(base + "/stream-key", headers=owner.auth)).json()["stream_key"]
    r = await api.client.patch(f"/api/admin/users/{owner.id}", json={"role": "viewer"},
                               headers=admin.auth)  # fmt: skip
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    for method, path in KEY_CALLS:
        r = await api.client.request(method, base + path, headers=owner.auth)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"] == {
            "code": "forbidden", "message": "this needs the creator role"
        }  # fmt: skip
    # Nothing changed: the key was neither shown nor rotated.
    assert await api.pool.fetchval("SELECT stream_key FROM lives WHERE id = $1", live["id"]) == key
    # Promoted again, the owner gets its key back; an admin's own live works too.
    await api.client.patch(f"/api/admin/users/{owner.id}", json={"role": "creator"},
                           headers=admin.auth)  # fmt: skip
    mine = await api.create_live(admin)
    for user, live_id in ((owner, live["id"]), (admin, mine["id"])):
        for method, path in KEY_CALLS:
            r = await api.client.request(method, f"/api/lives/{live_id}{path}", headers=user.auth)
            assert r.status_code == 200, (method, path, r.text)


async def test_own_account_endpoints_only_touch_the_caller(api: Api) -> None:
    alice = await api.make_user()
    bob = await api.make_user()
    r = await api.client.patch("/api/users/me", json={"bio": "alice here"}, headers=alice.auth)
    assert r.status_code == 200 and r.json()["id"] == alice.id
    assert (await api.client.get(f"/api/users/{bob.username}")).json()["bio"] is None
    # Logging out with someone else's refresh token leaves their session alone (see auth tests)
    # and the admin-only user endpoint refuses a user acting on another.
    assert await _call(api, "PATCH", f"/api/admin/users/{bob.id}", alice,
                       {"is_active": False}) == 403  # fmt: skip
    assert (await api.client.get("/api/users/me", headers=bob.auth)).status_code == 200
