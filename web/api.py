"""Declared API routes: each names its auth, body, query and response models.

Requests are validated the same way on every route (422 with the fields that failed), and
``/openapi.json`` is generated from the same declarations (web/openapi.py), so the document
cannot drift from what the code accepts. A handler takes a :class:`Call` and returns a pydantic
model (sent as JSON with the declared status), a ready ``Response``, or None (204).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import asyncpg
import pydantic
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config.settings import Settings
from db.cache import Cache
from db.pools import Database
from web.authn import CurrentUser, authenticate
from web.errors import ApiError, field_error, validation_error
from web.mail import Mailer
from web.tokens import KeySet

Auth = Literal["public", "user", "creator", "admin"]
Result = BaseModel | Response | None
Handler = Callable[["Call"], Awaitable[Result]]
M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 64 * 1024
MAX_ID = 2**63 - 1  # bigint: a larger number in a path cannot name a row
StopLive = Callable[[int, str], bool]


@dataclass(frozen=True, slots=True)
class HeaderParam:
    """An optional request header an endpoint reads (listed in the OpenAPI document; the
    handler reads and checks it)."""

    name: str
    values: tuple[str, ...]
    description: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str  # Starlette syntax: /api/lives/{live_id:int}
    handler: Handler
    summary: str
    tag: str
    auth: Auth = "public"
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None  # None: 204 No Content
    status: int = 200
    errors: tuple[int, ...] = field(default=())  # statuses beyond the ones implied above
    headers: tuple[HeaderParam, ...] = field(default=())
    # Documented only: a 200 streamed in this media type (server-sent events) instead of JSON,
    # and a request body of raw bytes in this media type (upload parts) read by the handler.
    stream: str | None = None
    raw_body: str | None = None

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def path_params(self) -> list[tuple[str, str]]:
        """(name, convertor) of each ``{name:convertor}`` in the path."""
        return [(m[0], m[1] or "str") for m in re.findall(r"{(\w+)(?::(\w+))?}", self.path)]


class Call:
    """One request to a declared endpoint: validated inputs and the app's services."""

    def __init__(self, request: Request, endpoint: Endpoint, user: CurrentUser | None) -> None:
        self.request = request
        self.endpoint = endpoint
        self._user = user

    # --- services opened in the app's lifespan ---

    @property
    def settings(self) -> Settings:
        settings: Settings = self.request.app.state.settings
        return settings

    @property
    def db(self) -> Database:
        db: Database = self.request.app.state.db
        return db

    @property
    def cache(self) -> Cache:
        cache: Cache = self.request.app.state.cache
        return cache

    @property
    def keys(self) -> KeySet:
        keys: KeySet = self.request.app.state.keys
        return keys

    @property
    def mailer(self) -> Mailer:
        mailer: Mailer = self.request.app.state.mailer
        return mailer

    @property
    def stop_live(self) -> StopLive | None:
        stop: StopLive | None = self.request.app.state.stop_live
        return stop

    # --- the caller and the inputs ---

    @property
    def user(self) -> CurrentUser:
        if self._user is None:  # a handler of a public endpoint asked for a user: a bug
            raise RuntimeError(f"{self.endpoint.operation_id} is public: there is no user")
        return self._user

    @property
    def client_ip(self) -> str:
        client = self.request.client
        return client.host[:100] if client else "unknown"

    @property
    def user_agent(self) -> str | None:
        agent = self.request.headers.get("user-agent")
        return agent.replace("\x00", "")[:300] if agent else None

    async def body(self, model: type[M]) -> M:
        if model is not self.endpoint.body:
            raise RuntimeError(f"{self.endpoint.operation_id} declares body {self.endpoint.body}")
        raw = bytearray()
        async for chunk in self.request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                raise ApiError(413, "payload_too_large", f"bodies are at most {MAX_BODY_BYTES} B")
        try:
            return model.model_validate_json(bytes(raw) or b"{}")
        except pydantic.ValidationError as exc:
            raise _from_pydantic(exc) from None

    def query(self, model: type[M]) -> M:
        if model is not self.endpoint.query:
            raise RuntimeError(f"{self.endpoint.operation_id} declares query {self.endpoint.query}")
        try:
            return model.model_validate(dict(self.request.query_params))
        except pydantic.ValidationError as exc:
            raise _from_pydantic(exc) from None

    def path_id(self, name: str) -> int:
        """An ``{name:int}`` path parameter; 404 when no row could have that id."""
        value = self.request.path_params[name]
        if not isinstance(value, int) or not 1 <= value <= MAX_ID:
            raise ApiError(404, "not_found", f"no such {name.removesuffix('_id')}")
        return value

    def path_str(self, name: str) -> str:
        value = self.request.path_params[name]
        assert isinstance(value, str)
        return value


def _from_pydantic(exc: pydantic.ValidationError) -> ApiError:
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in err["loc"]) or "body"
        message = err["msg"].removeprefix("Value error, ")
        details.append({"field": loc, "message": message})
    return validation_error(details)


def _role_allows(auth: Auth, role: str) -> bool:
    if auth == "admin":
        return role == "admin"
    if auth == "creator":
        return role in ("creator", "admin")
    return True


def _is_json(request: Request) -> bool:
    """The body is ``application/json`` (parameters allowed), or there is no body at all.

    Anything else is refused before the handler runs: a cross-site form or a no-cors fetch can
    POST text/plain, form or multipart bodies (or a typeless Blob) without a CORS preflight,
    but never application/json."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        no_body = "transfer-encoding" not in request.headers
        return no_body and request.headers.get("content-length", "0").strip() == "0"
    return content_type.partition(";")[0].strip().lower() == "application/json"


def _runner(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        user = None
        if endpoint.auth != "public":
            user = await authenticate(request)
            if not _role_allows(endpoint.auth, user.role):
                raise ApiError(403, "forbidden", f"this needs the {endpoint.auth} role")
        if endpoint.body is not None and not _is_json(request):
            raise ApiError(415, "unsupported_media_type",
                           "send the body as application/json")  # fmt: skip
        result = await endpoint.handler(Call(request, endpoint, user))
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(status_code=204)
        return JSONResponse(result.model_dump(mode="json"), status_code=endpoint.status)

    return run


def to_routes(endpoints: Sequence[Endpoint]) -> list[Route]:
    """One Starlette route per path, dispatching on the method, so that a 405 names (in
    ``Allow``) every method the path has."""
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = _runner(endpoint)

    def route(path: str, runners: dict[str, Callable[[Request], Awaitable[Response]]]) -> Route:
        async def dispatch(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await runners[method](request)

        return Route(path, dispatch, methods=list(runners))

    return [route(path, runners) for path, runners in by_path.items()]


# --- cursors: opaque to clients, "the id of the last item seen" inside ---


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = raw.partition(":")
        value = int(number)
    except (ValueError, UnicodeError):
        raise field_error("cursor", "not a cursor returned by this API") from None
    if prefix != "id" or not 1 <= value <= MAX_ID:
        raise field_error("cursor", "not a cursor returned by this API")
    return value


def paginate(rows: list[asyncpg.Record], limit: int) -> tuple[list[asyncpg.Record], str | None]:
    """Split ``limit + 1`` fetched rows into a page and the cursor of the next one (None when
    this page is the last)."""
    if len(rows) > limit:
        return rows[:limit], encode_cursor(int(rows[limit - 1]["id"]))
    return rows, None


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it passes ``limit`` bytes (never buffered beyond it)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
