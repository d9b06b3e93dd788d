"""Who is calling: bearer access tokens checked against their session, token issuing, and the
device cookie of clients that signed in before."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import Request
from starlette.responses import Response

from db import auth
from db.pools import Database
from web.errors import ApiError
from web.tokens import KeySet, TokenError

# OWASP "device cookies": set on each successful login, sent back to the auth routes only.
DEVICE_COOKIE = "streamd_device"
# The refresh token of browser clients (cookie mode, web.auth): never readable by scripts.
REFRESH_COOKIE = "streamd_refresh"
AUTH_COOKIE_PATH = "/api/auth"
DEVICE_TTL_S = 180 * 86400.0  # a device unused this long is a stranger again
DEVICES_PER_USER = 20
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


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


def _pair_key(used_token: str) -> bytes:
    # Derived from the token itself, not from its SHA-256 (what the database stores): only
    # whoever presents the used token can open the pair kept for it.
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"streamd refresh pair")
    return hkdf.derive(used_token.encode("utf-8", "surrogatepass"))


def seal_pair(used_token: str, refresh_token: str, access_token: str) -> bytes:
    """The new pair issued for ``used_token``, encrypted for the refresh grace (AES-GCM)."""
    nonce = secrets.token_bytes(12)
    plain = f"{refresh_token} {access_token}".encode()
    return nonce + AESGCM(_pair_key(used_token)).encrypt(nonce, plain, None)


def open_pair(used_token: str, sealed: bytes) -> tuple[str, str] | None:
    """(refresh token, access token) sealed by :func:`seal_pair`; None if it does not open."""
    try:
        plain = AESGCM(_pair_key(used_token)).decrypt(sealed[:12], sealed[12:], None)
    except (InvalidTag, ValueError):
        return None
    refresh_token, _, access_token = plain.decode().partition(" ")
    return refresh_token, access_token


def _token_cookie(request: Request, name: str) -> str | None:
    """The cookie ``name`` the client sent, when it is shaped like a token streamd issues."""
    value = request.cookies.get(name)
    if value is None or not 0 < len(value) <= 100 or not set(value) <= _TOKEN_CHARS:
        return None
    return value


def device_cookie(request: Request) -> str | None:
    """The device cookie the client sent, when it is shaped like one streamd issues."""
    return _token_cookie(request, DEVICE_COOKIE)


def refresh_cookie(request: Request) -> str | None:
    """The refresh-token cookie the client sent, when it is shaped like one streamd issues."""
    return _token_cookie(request, REFRESH_COOKIE)


def is_https(request: Request, public_url: str) -> bool:
    """The client reached streamd over https: the public URL says so, or the request came over
    TLS (its scheme honours X-Forwarded-Proto from STREAMD_TRUSTED_PROXIES only, see
    streamd.server.http_config). Secure cookies are then safe to set."""
    return public_url.startswith("https://") or request.url.scheme == "https"


def set_auth_cookie(
    response: Response, name: str, value: str, *, max_age: int, secure: bool
) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site sends it), Secure over
    https, and only sent to /api/auth. ``max_age`` 0 clears it (with the same attributes, or
    browsers keep the old one)."""
    response.set_cookie(
        name, value, max_age=max_age, path=AUTH_COOKIE_PATH, secure=secure, httponly=True,
        samesite="strict",
    )  # fmt: skip
