"""Cookie mode (``X-Token-Transport: cookie``): the refresh token lives only in the HttpOnly
cookie ``streamd_refresh``, through HTTP against a real PostgreSQL.

Cookies are sent explicitly (the client's jar is emptied before each request), so each test
says exactly which cookie a request carries.
"""

from __future__ import annotations

from typing import Any

import httpx

from config.settings import Settings
from tests.app_helpers import served_app
from tests.helpers import free_port
from tests.web.api_helpers import PASSWORD, Api, MakeApi

COOKIE_MODE = {"X-Token-Transport": "cookie"}
TTL = 30 * 86400
GOOD = "a quiet harbour at dawn"


def refresh_cookie(r: httpx.Response) -> tuple[str, dict[str, str]]:
    """(value, {attribute: value}) of the one ``streamd_refresh`` Set-Cookie of ``r``."""
    (header,) = [h for h in r.headers.get_list("set-cookie") if h.startswith("streamd_refresh=")]
    first, *rest = header.split(";")
    attributes = {}
    for part in rest:
        name, _, value = part.strip().partition("=")
        attributes[name.lower()] = value
    return first.partition("=")[2].strip('"'), attributes


def assert_cleared(r: httpx.Response) -> None:
    value, attributes = refresh_cookie(r)
    assert value == "" and attributes["max-age"] == "0" and attributes["path"] == "/api/auth"


async def post(api: Api, path: str, *, cookie: str | None = None, transport: bool = True,
               **kwargs: Any) -> httpx.Response:  # fmt: skip
    api.client.cookies.clear()
    headers = dict(kwargs.pop("headers", {}))
    if transport:
        headers.update(COOKIE_MODE)
    if cookie is not None:
        headers["Cookie"] = f"streamd_refresh={cookie}"
    return await api.client.post(path, headers=headers, **kwargs)


async def cookie_login(api: Api) -> tuple[dict[str, Any], str]:
    user = await api.make_user()
    r = await post(api, "/api/auth/login", json={"username": user.username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json(), refresh_cookie(r)[0]


async def me(api: Api, access: str) -> int:
    api.client.cookies.clear()
    r = await api.client.get("/api/users/me", headers={"Authorization": f"Bearer {access}"})
    return r.status_code


async def test_login_and_register_set_the_cookie_and_keep_the_token_out_of_json(api: Api) -> None:
    user = await api.make_user()
    r = await post(api, "/api/auth/login", json={"username": user.username, "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["refresh_token"] is None and body["access_token"]
    value, attributes = refresh_cookie(r)
    assert attributes == {"httponly": "", "max-age": str(TTL), "path": "/api/auth",
                          "samesite": "strict"}  # fmt: skip
    assert len(value) >= 40 and value not in r.text
    # The device cookie is still set beside it.
    assert any(h.startswith("streamd_device=") for h in r.headers.get_list("set-cookie"))

    body = {"username": "carol", "email": "carol@example.com", "password": GOOD}
    r = await post(api, "/api/auth/register", json=body)
    assert r.status_code == 201 and r.json()["refresh_token"] is None
    assert refresh_cookie(r)[1]["max-age"] == str(TTL)


async def test_the_cookie_is_secure_over_https(make_api: MakeApi) -> None:
    api = await make_api()
    user = await api.make_user()
    login = {"username": user.username, "password": PASSWORD}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="https://test"
    ) as tls:
        r = await tls.post("/api/auth/login", json=login, headers=COOKIE_MODE)
    assert "secure" in refresh_cookie(r)[1]
    # A public https URL (TLS ends before streamd) counts too.
    behind = await make_api(public_url="https://tv.example.com")
    r = await post(behind, "/api/auth/login", json=login)
    assert "secure" in refresh_cookie(r)[1]


async def test_x_forwarded_proto_counts_from_trusted_proxies_only(database_url: str) -> None:
    for proxies, secure in (((), False), (("127.0.0.1",), True)):
        settings = Settings(jwt_secret="s" * 40, http_port=free_port(), trusted_proxies=proxies)
        async with (
            served_app(settings, database_url) as (app, base_url),
            httpx.AsyncClient(base_url=base_url) as client,
        ):
            api = Api(app, client, app.state.db.primary)
            user = await api.make_user()
            r = await client.post(
                "/api/auth/login", json={"username": user.username, "password": PASSWORD},
                headers={**COOKIE_MODE, "X-Forwarded-Proto": "https"},
            )  # fmt: skip
            assert r.status_code == 200
            assert ("secure" in refresh_cookie(r)[1]) is secure, proxies


async def test_refresh_from_the_cookie_rotates_it(api: Api) -> None:
    login, first = await cookie_login(api)
    r = await post(api, "/api/auth/refresh", cookie=first)
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"] is None and await me(api, r.json()["access_token"]) == 200
    second, attributes = refresh_cookie(r)
    assert second != first and attributes["max-age"] == str(TTL)
    # No body at all works as {} does.
    r = await post(api, "/api/auth/refresh", cookie=second, content=b"")
    assert r.status_code == 200
    third = refresh_cookie(r)[0]
    # Within the grace the used cookie gets the same pair again (a retry)...
    again = await post(api, "/api/auth/refresh", cookie=second)
    assert again.status_code == 200 and refresh_cookie(again)[0] == third
    # ...past it, it is a copy: 401, the session ends, and the cookie is cleared.
    await api.pool.execute(
        "UPDATE refresh_tokens SET used_at = used_at - interval '1 hour' WHERE used_at IS NOT NULL"
    )
    r = await post(api, "/api/auth/refresh", cookie=second)
    assert r.status_code == 401 and "already used" in r.json()["error"]["message"]
    assert_cleared(r)
    assert await me(api, login["access_token"]) == 401
    r = await post(api, "/api/auth/refresh", cookie=third)
    assert r.status_code == 401
    assert_cleared(r)


async def test_a_cookie_refresh_without_the_header_is_refused_and_changes_nothing(
    api: Api,
) -> None:
    _, cookie = await cookie_login(api)
    for kwargs in ({}, {"json": {}}):
        r = await post(api, "/api/auth/refresh", cookie=cookie, transport=False, **kwargs)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "token_transport_required"
        assert "set-cookie" not in r.headers
    assert await api.pool.fetchval("SELECT count(*) FROM refresh_tokens WHERE used_at IS NOT NULL"
                                   ) == 0  # fmt: skip
    # The token was not spent: its first use, with the header, rotates it.
    r = await post(api, "/api/auth/refresh", cookie=cookie)
    assert r.status_code == 200 and refresh_cookie(r)[0] != cookie


async def test_a_failed_cookie_refresh_clears_the_cookie(api: Api) -> None:
    for cookie in (None, "x" * 43, "not a token!"):
        r = await post(api, "/api/auth/refresh", cookie=cookie)
        assert r.status_code == 401, cookie
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert_cleared(r)
    # An expired session's cookie too.
    _, cookie = await cookie_login(api)
    await api.pool.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 s'")
    r = await post(api, "/api/auth/refresh", cookie=cookie)
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    assert_cleared(r)


async def test_logout_ends_the_cookies_session_and_clears_it(api: Api) -> None:
    login, cookie = await cookie_login(api)
    auth = {"Authorization": f"Bearer {login['access_token']}"}
    r = await post(api, "/api/auth/logout", cookie=cookie, headers=auth)
    assert r.status_code == 204
    assert_cleared(r)
    assert await me(api, login["access_token"]) == 401
    assert (await post(api, "/api/auth/refresh", cookie=cookie)).status_code == 401

    # Everywhere: every session of the account, the JSON-mode ones included.
    login, cookie = await cookie_login(api)
    user_id = login["user"]["id"]
    username = login["user"]["username"]
    other = await api.login(username, PASSWORD)
    auth = {"Authorization": f"Bearer {login['access_token']}"}
    r = await post(api, "/api/auth/logout", cookie=cookie, headers=auth,
                   json={"everywhere": True})  # fmt: skip
    assert r.status_code == 204
    assert_cleared(r)
    assert await me(api, other["access_token"]) == 401
    open_sessions = "SELECT count(*) FROM auth_sessions WHERE user_id = $1 AND revoked_at IS NULL"
    assert await api.pool.fetchval(open_sessions, user_id) == 0


async def test_cookie_mode_refuses_tokens_in_json_and_unknown_transports(api: Api) -> None:
    login, cookie = await cookie_login(api)
    r = await post(api, "/api/auth/refresh", cookie=cookie, json={"refresh_token": cookie})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "refresh_token"
    auth = {"Authorization": f"Bearer {login['access_token']}"}
    r = await post(api, "/api/auth/logout", headers=auth, json={"refresh_token": cookie})
    assert r.status_code == 422
    r = await post(api, "/api/auth/login", transport=False,
                   headers={"X-Token-Transport": "header"},
                   json={"username": login["user"]["username"], "password": PASSWORD})  # fmt: skip
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "X-Token-Transport"
    assert await me(api, login["access_token"]) == 200  # nothing above ended anything


async def test_json_mode_is_unchanged(api: Api) -> None:
    user = await api.make_user()
    for transport in ({}, {"X-Token-Transport": "json"}):
        r = await post(api, "/api/auth/login", transport=False, headers=transport,
                       json={"username": user.username, "password": PASSWORD})  # fmt: skip
        assert r.status_code == 200 and r.json()["refresh_token"]
        assert not any(h.startswith("streamd_refresh=") for h in r.headers.get_list("set-cookie"))
        token = r.json()["refresh_token"]
        r = await post(api, "/api/auth/refresh", transport=False, headers=transport,
                       json={"refresh_token": token})  # fmt: skip
        assert r.status_code == 200 and r.json()["refresh_token"] not in (None, token)
        assert "set-cookie" not in r.headers
    r = await post(api, "/api/auth/refresh", transport=False, json={})
    assert r.status_code == 422
    assert r.json()["error"]["details"] == [{"field": "refresh_token", "message": "Field required"}]


async def test_other_origins_cannot_send_the_header(make_api: MakeApi) -> None:
    """The CSRF defence of cookie mode: the header forces a preflight, which CORS refuses even
    to an origin it lets call the API."""
    api = await make_api(cors_origins=("https://app.example.com",))
    preflight = await api.client.options("/api/auth/refresh", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-token-transport"})  # fmt: skip
    # A preflight that is not a 2xx fails in the browser, and the header is not allowed.
    assert preflight.status_code == 400
    allowed = preflight.headers.get("access-control-allow-headers", "").lower()
    assert "x-token-transport" not in allowed
