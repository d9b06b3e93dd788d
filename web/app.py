"""The Starlette application: routes, middleware and the resources opened in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Route

from chat.hub import Hub
from chat.metrics import HubCollector
from config.settings import Settings
from db import cache
from db.pools import Database
from db.videos import PROGRESS_CHANNEL
from packager.storage.base import Storage
from web import auth, chat, housekeeping, lives, uploads, users, videos
from web.api import Endpoint, StopLive, to_routes
from web.docs import docs_page, docs_script
from web.errors import EXCEPTION_HANDLERS
from web.health import health, ready
from web.mail import create_mailer
from web.metrics import HttpMetrics, metrics_endpoint
from web.middleware import RequestContextMiddleware
from web.openapi import build_document, openapi_endpoint
from web.payments import orders_api, webhooks
from web.payments.sandbox import CHECKOUT_PATH
from web.payments.service import Payments, build_providers
from web.tokens import load_key_set
from web.ui_routes import WebAppRoute, warn_if_not_built
from web.video_events import VideoEvents

log = logging.getLogger(__name__)

# Every API route, in matching order (/api/users/me before /api/users/{username}).
ENDPOINTS: list[Endpoint] = [
    *auth.ENDPOINTS,
    *users.ENDPOINTS,
    *lives.ENDPOINTS,
    *chat.ENDPOINTS,
    *uploads.ENDPOINTS,
    *videos.ENDPOINTS,
    *orders_api.ENDPOINTS,
    *webhooks.ENDPOINTS,
]


def cache_slots(db: Database, settings: Settings) -> asyncio.Semaphore | None:
    """How many cache misses may compute at once (see web.lives._cached); None: no room for
    the cache's lock connection beside the query's."""
    if db.has_replica:
        return asyncio.Semaphore(settings.db_pool_max)
    if settings.db_pool_max < 2:
        return None
    return asyncio.Semaphore(settings.db_pool_max // 2)


def create_app(
    settings: Settings,
    db: Database,
    hub: Hub,
    *,
    registry: CollectorRegistry | None = None,
    stop_live: StopLive | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    extra_middleware: Sequence[Middleware] = (),
    storage: Storage | None = None,
) -> Starlette:
    """Build the app; keys and background tasks open when the app starts, not here.

    ``db`` and ``hub``: the process's pools and its started chat hub, which the
    caller opened and will close (``streamd.resources``: the app is not a composition root).
    ``registry``: where metrics go. ``stop_live(live_id, reason) -> bool``: cuts a publish held
    by this process (``serve`` passes the RTMP server's); without it, stopping a live only marks
    it ended and NOTIFYs. ``extra_routes`` (/hls) come before the web app's catch-all GET
    route, which is last: a route added to the app afterwards is never reached by GET.
    ``extra_middleware`` (the /hls origin's fast path) runs inside the request context (request
    id, access log, metrics), ahead of the router.
    ``storage``: where uploads go (the packager's; without it, uploads answer 503).
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = HttpMetrics(registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.keys = load_key_set(settings)  # reads (or creates) the JWT secret/key files
        warn_if_not_built(settings.ui_dir)
        app.state.db = db
        app.state.cache = cache.Cache(db.primary)
        app.state.cache_slots = cache_slots(db, settings)
        app.state.mailer = create_mailer(settings, db.primary)
        app.state.chat = hub
        app.state.storage = storage
        app.state.video_events = VideoEvents()
        payments = Payments(settings, db, app.state.mailer, build_providers(settings))
        app.state.payments = payments
        hub.listen(PROGRESS_CHANNEL, app.state.video_events.on_notify)
        hub_metrics = HubCollector(hub)
        registry.register(hub_metrics)
        tasks = [
            asyncio.create_task(
                cache.run_cleanup(db.primary, settings.cache_cleanup_interval),
                name="cache-cleanup",
            ),
            asyncio.create_task(
                housekeeping.run(db.primary, settings, storage), name="housekeeping"
            ),
            asyncio.create_task(
                payments.run(settings.payments_reconcile_interval), name="payments-reconciler"
            ),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            registry.unregister(hub_metrics)
            await payments.aclose()

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
        Route("/docs/app.js", docs_script, methods=["GET"]),
        *to_routes(ENDPOINTS),
        Route(CHECKOUT_PATH, webhooks.sandbox_checkout, methods=["GET", "POST"]),
        *extra_routes,
        # Last: every other GET is a page of the web app (history mode).
        WebAppRoute(settings.ui_dir),
    ]
    # Chat sockets first: outside every other wrapper (see web.chat.ChatSocketMiddleware).
    middleware = [
        Middleware(chat.ChatSocketMiddleware),
        Middleware(RequestContextMiddleware, metrics=metrics),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                expose_headers=["X-Request-ID", "Retry-After"],
                max_age=600,
            )
        )
    middleware.extend(extra_middleware)
    handlers: Any = EXCEPTION_HANDLERS
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.metrics_registry = registry
    app.state.stop_live = stop_live
    app.state.openapi = build_document(ENDPOINTS)
    return app
