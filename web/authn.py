"""Who is calling: bearer access tokens checked against their session, and token issuing."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from uuid import UUID

from starlette.requests import Request

from db import auth
from db.pools import Database
from web.errors import ApiError
from web.tokens import KeySet, TokenError


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: int
    username: str
    email: str
    role: str
    session_id: UUID

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def unauthorized(message: str) -> ApiError:
    return ApiError(
        401, "unauthorized", message,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )  # fmt: skip


async def authenticate(request: Request) -> CurrentUser:
    """The user of the request's bearer token, or 401.

    The token's signature and expiry are checked first; then one query confirms that its session
    is open and its user active, so logout, password change, refresh-token reuse and
    deactivation take effect at once, not when the token expires. The role is read there too:
    role changes apply to tokens already issued.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("missing bearer token (Authorization: Bearer <access_token>)")
    keys: KeySet = request.app.state.keys
    try:
        claims = keys.verify(token.strip())
    except TokenError as exc:
        raise unauthorized(str(exc)) from None
    db: Database = request.app.state.db
    row = await auth.get_session_user(
        db.primary, user_id=claims.user_id, session_id=claims.session_id
    )
    if row is None:
        raise unauthorized("session ended or account deactivated; log in again")
    return CurrentUser(
        int(row["id"]), row["username"], row["email"], row["role"], claims.session_id
    )


def new_secret_token() -> tuple[str, bytes]:
    """An opaque token (256 random bits, URL-safe) and the digest stored in its place."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
