"""The Starlette application: routes, middleware and the resources opened in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from config.settings import Settings
from db import cache
from db.pools import Database, open_database
from web.errors import EXCEPTION_HANDLERS
from web.health import health, ready
from web.metrics import HttpMetrics, metrics_endpoint
from web.middleware import RequestContextMiddleware

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    database_url: str,
    *,
    registry: CollectorRegistry | None = None,
    database: Database | None = None,
) -> Starlette:
    """Build the app; pools and background tasks open when the app starts, not here.

    ``database``: pools the caller opened and will close (shared with ingest in ``serve``);
    otherwise the app opens its own from ``database_url``. ``registry``: where metrics go.
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = HttpMetrics(registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = database if database is not None else await open_database(database_url, settings)
        app.state.db = db
        app.state.cache = cache.Cache(db.primary)
        cleanup = asyncio.create_task(
            cache.run_cleanup(db.primary, settings.cache_cleanup_interval), name="cache-cleanup"
        )
        try:
            yield
        finally:
            cleanup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cleanup
            if database is None:
                await db.close()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    handlers: Any = EXCEPTION_HANDLERS
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestContextMiddleware, metrics=metrics)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics_registry = registry
    return app
