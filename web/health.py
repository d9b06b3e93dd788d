"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db.errors import DB_ERRORS
from db.pools import Database
from db.probe import ping
from web.errors import error_response

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 2.0


async def health(request: Request) -> Response:
    """The process is alive and serving HTTP; says nothing about its dependencies."""
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """200 when every database pool answers, 503 with the reason otherwise."""
    db: Database = request.app.state.db
    pools = {"primary": db.primary, **({"replica": db.read} if db.has_replica else {})}
    for name, pool in pools.items():
        try:
            await ping(pool, READY_TIMEOUT_S)
        except DB_ERRORS as exc:
            reason = f"{name} database unreachable: {type(exc).__name__}: {exc}".strip()
            log.warning("not ready: %s", reason)
            return error_response(503, "not_ready", reason, headers={"Retry-After": "5"})
    return JSONResponse({"status": "ready", "database": {name: "ok" for name in pools}})
