"""HTTP hardening: forwarded headers, content types, security headers.

The forwarded-header tests serve the real app with the uvicorn config ``streamd serve`` builds
(streamd.server.http_config) on a loopback port, so what is checked is what runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from config.settings import Settings
from packager.storage.base import known_object_headers
from tests.app_helpers import served_app
from tests.helpers import free_port
from tests.web.api_helpers import Api
from web.app import ENDPOINTS
from web.docs import CSP
from web.hls import hls_routes
from web.openapi import build_document


@contextlib.asynccontextmanager
async def serving(
    database_url: str, extra_routes: Sequence[BaseRoute] = (), **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on loopback under streamd's own uvicorn config; a client for it."""
    settings = Settings(**{"jwt_secret": "s" * 40, "http_host": "127.0.0.1",
                           "http_port": free_port(), **overrides})  # fmt: skip
    async with (
        served_app(settings, database_url, extra_routes=extra_routes) as (_, base),
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        yield client


async def _failed_logins_from_spoofed_addresses(client: httpx.AsyncClient, n: int) -> list[int]:
    """``n`` failed logins, each for another account and with another X-Forwarded-For."""
    statuses = []
    for i in range(n):
        r = await client.post(
            "/api/auth/login",
            json={"username": f"nobody{i}", "password": "wrong password"},
            headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
        )
        statuses.append(r.status_code)
    return statuses


def _access_clients(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {r.client for r in caplog.records if r.name == "streamd.access"}  # type: ignore[attr-defined]


async def test_forwarded_for_is_ignored_by_default(
    database_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uvicorn's own variable must not widen the trust: the setting is the only source.
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    caplog.set_level(logging.INFO, logger="streamd.access")
    async with serving(database_url, login_max_failures_per_ip=3) as client:
        statuses = await _failed_logins_from_spoofed_addresses(client, 5)
    # The address the throttle sees is the peer's, whatever the header says.
    assert statuses == [401, 401, 401, 429, 429]
    assert _access_clients(caplog) == {"127.0.0.1"}


async def test_forwarded_for_is_honoured_from_a_trusted_proxy(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamd.access")
    async with serving(database_url, login_max_failures_per_ip=3,
                       trusted_proxies=("127.0.0.1",)) as client:  # fmt: skip
        statuses = await _failed_logins_from_spoofed_addresses(client, 5)
        await client.get("/health")  # no header: the proxy itself
    assert statuses == [401] * 5
    assert _access_clients(caplog) == {f"203.0.113.{i}" for i in range(1, 6)} | {"127.0.0.1"}


# --- content types: JSON endpoints take application/json only ---

REGISTER = {"username": "typed", "email": "typed@example.com",
            "password": "a long enough passphrase"}  # fmt: skip


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/jsonp", "application/json-seq", None,
])  # fmt: skip
async def test_a_json_body_under_another_content_type_is_415(
    api: Api, content_type: str | None
) -> None:
    # What a cross-site form or a no-cors fetch can send without a preflight: refused before the
    # handler runs, so nothing is created.
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = await api.client.post("/api/auth/register", content=json.dumps(REGISTER).encode(),
                              headers=headers)  # fmt: skip
    assert r.status_code == 415, r.text
    assert r.json()["error"]["code"] == "unsupported_media_type"
    assert await api.pool.fetchval("SELECT count(*) FROM users") == 0
    owner = await api.make_user("creator")
    live = await api.create_live(owner)
    for path, body in [(f"/api/lives/{live['id']}/heartbeat", {}),
                       ("/api/auth/password-reset", {"email": "x@example.com"})]:  # fmt: skip
        r = await api.client.post(path, content=json.dumps(body).encode(), headers=headers)
        assert r.status_code == 415, (path, r.text)


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON;Charset=UTF-8",
])  # fmt: skip
async def test_application_json_with_parameters_is_accepted(api: Api, content_type: str) -> None:
    r = await api.client.post("/api/auth/register", content=json.dumps(REGISTER).encode(),
                              headers={"Content-Type": content_type})  # fmt: skip
    assert r.status_code == 201, r.text


async def test_a_chunked_body_without_a_content_type_is_415(api: Api) -> None:
    # No Content-Length to say "there is a body": the transfer encoding says it instead.
    async def body() -> AsyncIterator[bytes]:
        yield json.dumps(REGISTER).encode()

    r = await api.client.post("/api/auth/register", content=body())
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-type" not in r.request.headers
    assert r.status_code == 415, r.text
    assert await api.pool.fetchval("SELECT count(*) FROM users") == 0


async def test_an_empty_body_needs_no_content_type(api: Api) -> None:
    # An endpoint whose body is all optional may be called with no body at all.
    user = await api.make_user()
    r = await api.client.post("/api/auth/logout", headers=user.auth)
    assert r.status_code == 204, r.text


def test_bodies_declare_415_in_openapi() -> None:
    document = build_document(ENDPOINTS)
    # JSON bodies: any other type is refused. Raw bodies (upload parts) take any bytes.
    with_body = [op for methods in document["paths"].values() for op in methods.values()
                 if "application/json" in op.get("requestBody", {}).get("content", {})]  # fmt: skip
    assert with_body and all("415" in op["responses"] for op in with_body)


# --- headers on every response ---


async def _boom(request: Request) -> Response:
    raise RuntimeError("a bug")


async def test_every_response_carries_nosniff_and_a_referrer_policy(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "hls" / "1").mkdir(parents=True)
    (tmp_path / "hls" / "1" / "master.m3u8").write_text("#EXTM3U\n")
    (tmp_path / "hls" / "1" / "seg_1.m4s").write_bytes(b"segment")
    routes = [*hls_routes(tmp_path, known_object_headers), Route("/boom", _boom)]
    async with serving(database_url, routes, cors_origins=("https://app.example.com",)) as c:
        preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
        answers = {
            "health": await c.get("/health"),
            "api": await c.get("/api/lives"),
            "no route": await c.get("/nowhere"),
            "405": await c.delete("/health"),
            "415": await c.post("/api/auth/login", content=b"{}"),
            "422": await c.post("/api/auth/login", json={}),
            "401": await c.get("/api/users/me"),
            "openapi": await c.get("/openapi.json"),
            "docs": await c.get("/docs"),
            "docs script": await c.get("/docs/app.js"),
            "metrics": await c.get("/metrics"),
            "hls": await c.get("/hls/1/master.m3u8"),
            "hls 404": await c.get("/hls/1/nope.m3u8"),
            "hls 405": await c.post("/hls/1/master.m3u8"),
            "hls 416": await c.get("/hls/1/seg_1.m4s", headers={"Range": "bytes=7-"}),
            "cors preflight": await c.options("/api/auth/login", headers=preflight),
            "500": await c.get("/boom"),
        }
    assert answers["500"].status_code == 500
    assert answers["500"].json()["error"]["code"] == "internal_error"
    for name, r in answers.items():
        assert r.headers.get_list("x-content-type-options") == ["nosniff"], name
        assert r.headers.get_list("referrer-policy") == ["no-referrer"], name
        assert r.headers.get_list("x-request-id"), name
    for name in ("hls 404", "hls 405", "hls 416"):  # /hls errors: JSON, CORS
        assert answers[name].headers["access-control-allow-origin"] == "*", name
        assert answers[name].headers["content-type"] == "application/json", name
    # The HTML page and its script keep their Content-Security-Policy.
    for name in ("docs", "docs script"):
        assert answers[name].headers["content-security-policy"] == CSP
    assert any("unhandled error on GET /boom" in r.getMessage() for r in caplog.records)
