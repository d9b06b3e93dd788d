"""Request id, security headers, one access-log line and metrics per request, as one pure ASGI
middleware.

Successful ``/hls`` answers are logged at DEBUG, not INFO: with LL-HLS every viewer asks for a
playlist and a part three times a second, which would bury every other line (and cost more
than answering them). Their errors are logged as usual, and every request is counted in the
metrics (``streamd_http_requests_total{route="/hls/{path:path}"}``).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.errors import internal_error
from web.metrics import HttpMetrics

access_log = logging.getLogger("streamd.access")

REQUEST_ID_HEADER = b"x-request-id"
# A client-supplied id is kept only when it is short and plain (it lands in logs).
_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")
UNMATCHED = "<unmatched>"
# On every HTTP answer (a route may set its own): no MIME sniffing of JSON, playlists or user
# content into something executable, and no Referer from pages of this origin (reset and
# verification links carry tokens in their query).
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))
# Request ids: a random prefix per process and a counter (unique, and no urandom per request).
_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)
_QUIET_PREFIX = "/hls/"


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):020x}"  # 32 hex digits, as a uuid4 had


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/lives/{id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = incoming.decode() if _SAFE_ID.match(incoming) else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # if the app dies before sending a start message
        response_started = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = [h for h in message.get("headers", []) if h[0] != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if scope["type"] == "http" and not response_started:
                # Starlette's ServerErrorMiddleware, outside this one, logs the error (through
                # web.errors.handle_unexpected) and would answer without the headers above:
                # answer here; it sends nothing once a response has started.
                await internal_error()(scope, receive, send_with_id)
            raise
        finally:
            if scope["type"] == "http":
                elapsed = time.perf_counter() - started
                route = route_template(scope)
                self.metrics.observe(scope["method"], route, status, elapsed)
                client = scope.get("client")
                quiet = status < 400 and scope["path"].startswith(_QUIET_PREFIX)
                access_log.log(
                    logging.DEBUG if quiet else logging.INFO,
                    "%s %s %d %.1fms",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed * 1000,
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "client": client[0] if client else None,
                    },
                )
