"""Helpers of the API tests: the real app in-process (httpx ASGI transport), a real PostgreSQL.

:class:`Api` is a client plus helpers that create users straight in the database with a password
hashed once per session (argon2 is slow on purpose) and log them in through the API, or mint a
session for them without a login when a test is not about logging in.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from starlette.applications import Starlette

from db import auth as auth_db
from db import outbox, users
from web.accounts import hash_password
from web.authn import new_secret_token

PASSWORD = "grey pelican under the bridge"
_HASH: list[str] = []
_names = itertools.count(1)


def password_hash() -> str:
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    return _HASH[0]


@dataclass
class User:
    id: int
    username: str
    email: str
    role: str
    access: str = ""
    refresh: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


@dataclass
class Api:
    app: Starlette
    client: httpx.AsyncClient
    pool: asyncpg.Pool
    stopped: list[tuple[int, str]] = field(default_factory=list)

    async def make_user(self, role: str = "viewer", *, login: bool = False) -> User:
        """A user in the database; with a session minted (or, ``login``, a real login)."""
        n = next(_names)
        row = await users.create(
            self.pool, username=f"user{n}", email=f"user{n}@example.com",
            password_hash=password_hash(), role=role,
        )  # fmt: skip
        user = User(row["id"], row["username"], row["email"], role)
        if login:
            body = await self.login(user.username, PASSWORD)
            user.access, user.refresh = body["access_token"], body["refresh_token"]
        else:
            refresh, digest = new_secret_token()
            session = await auth_db.create_session(
                self.pool, user_id=user.id, token_hash=digest, ttl=3600, user_agent=None, ip=None
            )
            user.access = self.app.state.keys.issue(user_id=user.id, session_id=session, role=role)
            user.refresh = refresh
        return user

    async def login(self, username: str, password: str) -> dict[str, Any]:
        r = await self.client.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def create_live(self, owner: User, **fields: Any) -> dict[str, Any]:
        r = await self.client.post(
            "/api/lives", json={"title": "A live", **fields}, headers=owner.auth
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    async def last_mail(self, to: str, kind: str) -> asyncpg.Record:
        mail = await outbox.latest_for(self.pool, to, kind=kind)
        assert mail is not None, f"no {kind} mail to {to}"
        return mail


MakeApi = Callable[..., Awaitable[Api]]
