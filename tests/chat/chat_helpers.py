"""Helpers of the chat tests: the real app served by uvicorn on loopback (the sans-IO websockets
protocol, as ``streamd serve`` runs it), real PostgreSQL, real WebSocket clients (websockets).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import uvicorn
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect

from chat.hub import Hub
from db import auth as auth_db
from db import lives, users
from streamd.server import WEBSOCKET_OPTIONS
from tests.app_helpers import InLoopServer
from tests.helpers import free_port
from web.authn import new_secret_token
from web.tokens import KeySet

_names = itertools.count(1)


async def start_uvicorn(
    app: Any, *, lifespan: str = "on", **options: Any
) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """``app`` served by uvicorn on a free loopback port with ``streamd serve``'s WebSocket
    options (``options`` override them), once it listens: (server, its task, port)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                            lifespan=lifespan, **{**WEBSOCKET_OPTIONS, **options})  # fmt: skip
    server = InLoopServer(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    return server, task, port


# ``make_server(**settings)`` (conftest.py): the app served on a loopback port.
MakeServer = Callable[..., Awaitable["ChatServer"]]


@dataclass
class User:
    id: int
    username: str
    role: str
    access: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


@dataclass
class ChatServer:
    app: Starlette
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pool(self) -> asyncpg.Pool:
        pool: asyncpg.Pool = self.app.state.db.primary
        return pool

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.chat
        return hub

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=10)

    async def make_user(self, role: str = "viewer") -> User:
        return await make_user(self.pool, self.app.state.keys, role)

    async def make_live(self, owner: User, **kwargs: Any) -> int:
        row = await lives.create(self.pool, user_id=owner.id, title="chat test", **kwargs)
        return int(row["id"])

    async def ticket(self, user: User, live_id: int) -> str:
        async with self.http() as client:
            r = await client.post(f"/api/lives/{live_id}/chat/ticket", headers=user.auth)
        assert r.status_code == 200, r.text
        ticket: str = r.json()["ticket"]
        return ticket

    async def connect(self, live_id: int, user: User | None = None) -> Chat:
        """A WebSocket client in the room, its welcome already read."""
        return await open_chat(self.base_url, live_id, None if user is None else
                               await self.ticket(user, live_id))  # fmt: skip


async def make_user(pool: asyncpg.Pool | asyncpg.Connection, keys: KeySet, role: str = "viewer"
                    ) -> User:  # fmt: skip
    n = next(_names)
    row = await users.create(pool, username=f"chatter{n}", email=f"chatter{n}@example.com",
                             password_hash="unused", role=role)  # fmt: skip
    _, digest = new_secret_token()
    session = await auth_db.create_session(
        pool, user_id=row["id"], token_hash=digest, ttl=3600, user_agent=None, ip=None
    )
    access = keys.issue(user_id=row["id"], session_id=session, role=role)
    return User(int(row["id"]), row["username"], role, access)


class Chat:
    """One WebSocket client of a room."""

    def __init__(self, ws: ClientConnection, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome

    async def send(self, **event: Any) -> None:
        await self.ws.send(json.dumps(event))

    async def say(self, text: str) -> None:
        await self.send(type="message", text=text)

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        return event

    async def next_of(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        """The next event of this type; others before it are skipped."""
        while True:
            event = await self.next(timeout)
            if event["type"] == kind:
                return event

    async def close(self) -> None:
        await self.ws.close()


async def open_chat(base_url: str, live_id: int, ticket: str | None = None) -> Chat:
    url = base_url.replace("http://", "ws://") + f"/ws/lives/{live_id}/chat"
    if ticket is not None:
        url += f"?ticket={ticket}"
    ws = await connect(url, open_timeout=10, max_size=2**20)
    first = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return Chat(ws, first)
