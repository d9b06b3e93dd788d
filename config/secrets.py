"""Secrets that streamd generates once and keeps under the data directory."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from config.settings import ConfigError, Settings

JWT_SECRET_FILE = "jwt_secret"  # noqa: S105 - a file name


def jwt_secret(settings: Settings) -> str:
    """The configured JWT secret, or the one persisted in the data dir (created on first use).

    Never a hard-coded default: a fresh install gets 256 random bits, readable by the owner only.
    """
    if settings.jwt_secret is not None:
        return settings.jwt_secret
    path = settings.data_dir / JWT_SECRET_FILE
    if path.exists():
        return _read(path)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Write a temporary file, then hard-link it into place: the link is atomic and exclusive, so
    # two processes starting at once agree on one secret and no reader sees a half-written file.
    tmp = path.with_name(f".{JWT_SECRET_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
        with contextlib.suppress(FileExistsError):  # another process won: use its secret
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if len(value) < 32:
        raise ConfigError(
            f"{path} holds a JWT secret shorter than 32 characters; delete it to generate a new one"
        )
    return value


def derived_key(settings: Settings, purpose: bytes) -> bytes:
    """A key for one purpose (player ids, upload URLs), derived from what every process of a
    deployment shares: the JWT secret (HS256) or the JWT private key file (RS256, EdDSA)."""
    if settings.jwt_private_key is not None:
        try:
            material = settings.jwt_private_key.read_bytes()
        except OSError as exc:
            raise ConfigError(f"STREAMD_JWT_PRIVATE_KEY cannot be read: {exc.strerror}") from None
    else:
        material = jwt_secret(settings).encode()
    return hmac.new(material, purpose, hashlib.sha256).digest()
