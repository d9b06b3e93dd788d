"""/openapi.json describes every route; /docs works offline; CORS follows the setting."""

from __future__ import annotations

import re

from starlette.routing import Route

from tests.web.api_helpers import Api, MakeApi
from web.app import ENDPOINTS
from web.ui_routes import WebAppRoute


async def test_openapi_describes_every_route(api: Api) -> None:
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = set()
    for route in api.app.routes:
        if isinstance(route, WebAppRoute):
            continue  # the web app's pages: not part of the API
        assert isinstance(route, Route)
        path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
        served |= {(m, path) for m in route.methods or () if m != "HEAD"}
    assert served == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["operationId"], (method, path)
            # A success: 2xx, or a redirect (the sandbox page's 303 back to the order).
            assert any(code[0] in "23" for code in op["responses"]), (method, path)
            if path.startswith("/api/"):
                for code, response in op["responses"].items():
                    if code != "204":
                        # JSON, or a declared stream (the progress events).
                        (content,) = response["content"].values()
                        assert "schema" in content, (method, path, code)
            if "requestBody" in op:
                content = op["requestBody"]["content"]
                # Raw bytes (an upload part, a signed webhook), or the sandbox page's form.
                if {"application/octet-stream", "application/x-www-form-urlencoded"} & set(content):
                    continue
                ref = content["application/json"]["schema"]["$ref"]
                assert ref.split("/")[-1] in doc["components"]["schemas"]
    events = doc["paths"]["/api/videos/{video_id}/events"]["get"]["responses"]["200"]
    assert list(events["content"]) == ["text/event-stream"]
    secured = {e.operation_id for e in ENDPOINTS if e.auth != "public"}
    assert secured == {op["operationId"] for ops in doc["paths"].values()
                       for op in ops.values() if "security" in op}  # fmt: skip
    # The stream key appears in no public schema.
    live = doc["components"]["schemas"]["LiveOut"]["properties"]
    assert "stream_key" not in live and {"playback_url", "thumbnail_url", "viewer_count",
                                         "status"} <= set(live)  # fmt: skip


async def test_docs_are_served_locally(api: Api) -> None:
    page = await api.client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    script = await api.client.get("/docs/app.js")
    assert script.status_code == 200 and "openapi.json" in script.text
    for text in (page.text, script.text):
        assert not re.search(r"https?://", text), "no outside URL, no CDN"
    assert "default-src 'none'" in page.headers["content-security-policy"]


async def test_cors(make_api: MakeApi) -> None:
    closed = await make_api()
    r = await closed.client.get("/api/lives", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in r.headers

    api = await make_api(cors_origins=("https://app.example.com",))
    preflight = await api.client.options("/api/lives", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})  # fmt: skip
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    r = await api.client.get("/api/lives", headers={"Origin": "https://app.example.com"})
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    r = await api.client.get("/api/lives", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in r.headers


async def test_errors_are_uniform_json(api: Api) -> None:
    for method, path in (("GET", "/api/nothing"), ("PUT", "/api/lives"),
                         ("GET", "/api/lives/abc"), ("GET", "/api/lives/0"),
                         ("GET", "/api/users/me")):  # fmt: skip
        r = await api.client.request(method, path)
        assert r.status_code in (401, 404, 405), (method, path)
        assert set(r.json()["error"]) >= {"code", "message"}
    r = await api.client.put("/api/lives/1")
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "PATCH", "DELETE"}
