"""The web skeleton through HTTP, in-process, against a real PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from config.settings import Settings
from streamd.logs import JsonFormatter
from tests.app_helpers import web_app


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[Starlette]:
    async with (
        web_app(Settings(), database_url) as application,
        application.router.lifespan_context(application),
    ):
        yield application


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    r = await client.get("/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "database": {"primary": "ok"}}


async def test_errors_are_json_for_404_and_405(client: httpx.AsyncClient) -> None:
    # (Other GETs outside /api are pages of the web app: tests/web/test_ui_routes.py.)
    r = await client.get("/api/no/such/page")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "error": {"code": "not_found", "message": "no route for GET /api/no/such/page"}
    }
    r = await client.post("/health")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in r.json()["error"]["message"]


async def test_request_id_is_generated_or_kept(client: httpx.AsyncClient) -> None:
    generated = (await client.get("/health")).headers["x-request-id"]
    assert len(generated) == 32
    assert (await client.get("/health")).headers["x-request-id"] != generated
    kept = await client.get("/health", headers={"X-Request-ID": "lb-abc.123"})
    assert kept.headers["x-request-id"] == "lb-abc.123"
    hostile = await client.get("/health", headers={"X-Request-ID": "x" * 65})
    assert hostile.headers["x-request-id"] != "x" * 65


async def test_metrics_by_route_template(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await client.get("/health")
    await client.get("/api/missing/1")
    await client.get("/api/missing/2")
    await client.get("/page/1")  # pages of the web app
    await client.get("/page/2")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'streamd_http_requests_total{method="GET",route="/health",status="200"} 3.0' in text
    # Unknown paths collapse into one label value instead of one series per path.
    assert 'route="<unmatched>",status="404"} 2.0' in text
    assert "/missing/1" not in text
    assert 'method="GET",route="/{web app}"' in text and "/page/1" not in text
    assert (
        'streamd_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/health"}'
        in (text)
    )


async def test_one_structured_access_log_line_per_request(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="streamd.access"):
        await client.get("/health", headers={"X-Request-ID": "req-1"})
    records = [r for r in caplog.records if r.name == "streamd.access"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["logger"] == "streamd.access"
    assert line["request_id"] == "req-1"
    assert (line["method"], line["path"], line["route"], line["status"]) == (
        "GET",
        "/health",
        "/health",
        200,
    )
    assert line["duration_ms"] >= 0
    assert line["level"] == "info"


async def test_read_pool_falls_back_to_primary(app: Starlette) -> None:
    db = app.state.db
    assert db.read is db.primary
    assert not db.has_replica


async def test_read_pool_uses_replica_when_configured(database_url: str) -> None:
    # A second URL to the same server stands in for a replica: a separate pool is opened.
    settings = Settings(database_replica_url=database_url)
    async with (
        web_app(settings, database_url) as application,
        application.router.lifespan_context(application),
    ):
        db = application.state.db
        assert db.has_replica
        assert db.read is not db.primary
        assert await db.read.fetchval("SELECT 1") == 1
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            body = (await c.get("/ready")).json()
        assert body["database"] == {"primary": "ok", "replica": "ok"}


async def test_unexpected_errors_are_json_500_without_details(database_url: str) -> None:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def broken(request: Request) -> Response:
        raise RuntimeError("secret internals")

    # Through extra_routes: a route added after create_app would come after the web app's
    # catch-all GET route.
    routes = [Route("/broken", broken)]
    async with web_app(Settings(), database_url, extra_routes=routes) as application:
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with (
            application.router.lifespan_context(application),
            httpx.AsyncClient(transport=transport, base_url="http://test") as c,
        ):
            r = await c.get("/broken")
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert "secret" not in r.text
