"""Access tokens: short-lived JWTs (PyJWT) signed with the current key, checked by ``kid``.

HS256 uses the shared secret (``STREAMD_JWT_SECRET`` or the generated one). RS256 and EdDSA
sign with ``STREAMD_JWT_PRIVATE_KEY``; the public keys of retired keys stay accepted through
``STREAMD_JWT_PREVIOUS_KEYS`` (``kid=file``), so a key can be rotated without logging anyone
out: tokens name their key in the ``kid`` header, and each kid is tied to one algorithm.
Verification never trusts the token's own ``alg``: the algorithm comes from the key.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from config.secrets import jwt_secret
from config.settings import ConfigError, Settings

ISSUER = "streamd"
AUDIENCE = "streamd-api"
LEEWAY_S = 5  # clock skew tolerated between web processes
RSA_MIN_BITS = 2048


class TokenError(Exception):
    """The token cannot be accepted; the message says why (safe to return to the client)."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    session_id: UUID


@dataclass(frozen=True, slots=True)
class VerifyKey:
    algorithm: str
    key: Any  # an HMAC secret (str) or a public key object


class KeySet:
    """The signing key and every key tokens may be verified with, by kid."""

    def __init__(
        self, *, algorithm: str, signing_key: Any, kid: str, verify: dict[str, VerifyKey],
        ttl_s: float,
    ) -> None:  # fmt: skip
        self.algorithm = algorithm
        self.kid = kid
        self.ttl_s = ttl_s
        self._signing_key = signing_key
        self._verify = dict(verify)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._verify)

    def issue(self, *, user_id: int, session_id: UUID, role: str, now: float | None = None
              ) -> str:  # fmt: skip
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(user_id),
            "sid": str(session_id),
            "role": role,  # informational for clients; authorization reads the database
            "iat": issued,
            "exp": issued + int(self.ttl_s),
        }
        return jwt.encode(claims, self._signing_key, self.algorithm, headers={"kid": self.kid})

    def verify(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenError("malformed token") from None
        kid = header.get("kid")
        key = self._verify.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("token signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],  # from the key, never from the token
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "sub", "sid", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.InvalidTokenError:
            raise TokenError("invalid token") from None
        try:
            return AccessClaims(int(claims["sub"]), UUID(str(claims["sid"])))
        except (ValueError, TypeError):
            raise TokenError("invalid token") from None


def load_key_set(settings: Settings) -> KeySet:
    """Build the key set from settings; ConfigError (one line) for unusable key files."""
    if settings.jwt_algorithm == "HS256":
        secret = jwt_secret(settings)
        kid = settings.jwt_key_id or "hs-" + hashlib.sha256(secret.encode()).hexdigest()[:12]
        return KeySet(
            algorithm="HS256", signing_key=secret, kid=kid,
            verify={kid: VerifyKey("HS256", secret)}, ttl_s=settings.access_token_ttl,
        )  # fmt: skip
    assert settings.jwt_private_key is not None  # load_settings checked it
    private = _load_private(settings.jwt_private_key, settings.jwt_algorithm)
    public = private.public_key()
    kid = settings.jwt_key_id or _thumbprint(public)
    verify = {kid: VerifyKey(settings.jwt_algorithm, public)}
    for old_kid, path in settings.jwt_previous_keys:
        if old_kid == kid:
            raise ConfigError(f"STREAMD_JWT_PREVIOUS_KEYS: kid {old_kid!r} is the current key's")
        old = _load_public(path)
        verify[old_kid] = VerifyKey(_algorithm_of(old, path), old)
    return KeySet(
        algorithm=settings.jwt_algorithm, signing_key=private, kid=kid, verify=verify,
        ttl_s=settings.access_token_ttl,
    )  # fmt: skip


def _load_private(path: Path, algorithm: str) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"STREAMD_JWT_PRIVATE_KEY={str(path)!r} is invalid: expected an unencrypted PEM "
            f"private key ({type(exc).__name__})"
        ) from None
    if algorithm == "RS256" and isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < RSA_MIN_BITS:
            raise ConfigError(
                f"STREAMD_JWT_PRIVATE_KEY={str(path)!r} is invalid: expected an RSA key of at "
                f"least {RSA_MIN_BITS} bits, got {key.key_size}"
            )
        return key
    if algorithm == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    wanted = "an RSA" if algorithm == "RS256" else "an Ed25519"
    raise ConfigError(
        f"STREAMD_JWT_PRIVATE_KEY={str(path)!r} is invalid: expected {wanted} private key for "
        f"STREAMD_JWT_ALGORITHM={algorithm}"
    )


def _load_public(path: Path) -> Any:
    try:
        return serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError):
        raise ConfigError(
            f"STREAMD_JWT_PREVIOUS_KEYS: {str(path)!r} is not a PEM public key"
        ) from None


def _algorithm_of(public: Any, path: Path) -> str:
    if isinstance(public, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ConfigError(f"STREAMD_JWT_PREVIOUS_KEYS: {str(path)!r} is neither RSA nor Ed25519")


def _thumbprint(public: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> str:
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]
