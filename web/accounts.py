"""Account rules shared by the API and the CLI: what a valid user is, and password hashing."""

from __future__ import annotations

import asyncio
import re

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from db import users
from db.types import Executor
from web.passwords import weakness

ROLES = ("viewer", "creator", "admin")
USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,50}$")
# No controls (C0, DEL, C1): an address reaches mail headers, logs and terminals.
_ADDR = r"[^@\s\x00-\x1f\x7f-\x9f]"
EMAIL = re.compile(rf"^{_ADDR}{{1,64}}@{_ADDR}+\.{_ADDR}+$")
PASSWORD_MIN, PASSWORD_MAX = 10, 1024

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


class AccountError(ValueError):
    """A value a user supplied breaks an account rule; the message says which and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_username(username: str) -> str:
    if not USERNAME.fullmatch(username):
        raise AccountError("username", "3-50 characters: letters, digits, '_', '.', '-'")
    return username


def check_email(email: str) -> str:
    email = email.strip()
    if len(email) > 255 or not EMAIL.fullmatch(email):
        raise AccountError("email", "not an email address")
    return email


def check_password(
    password: str, *, username: str = "", email: str = "", field: str = "password"
) -> str:
    """Length, variety, and the guessable: common passwords and the account's own names."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise AccountError(field, f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if len(set(password)) < 4:
        raise AccountError(field, "uses too few different characters")
    if username and username.lower() in password.lower():
        raise AccountError(field, "must not contain the username")
    local = email.partition("@")[0].lower()
    if len(local) >= 3 and local in password.lower():
        raise AccountError(field, "must not contain your email address")
    if (why := weakness(password)) is not None:
        raise AccountError(field, why)
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError("role", "one of " + ", ".join(ROLES))
    return role


def hash_password(password: str) -> str:
    """argon2id; ~50 ms of CPU: call it through ``asyncio.to_thread`` from async code."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def create_user(
    conn: Executor, *, username: str, email: str, password: str, role: str
) -> asyncpg.Record:
    """Validate and insert a user; AccountError for rule breaks and taken names or emails."""
    check_username(username)
    email = check_email(email)
    check_password(password, username=username, email=email)
    check_role(role)
    password_hash = await asyncio.to_thread(hash_password, password)  # ~50 ms of CPU, off-loop
    try:
        return await users.create(
            conn, username=username, email=email, password_hash=password_hash, role=role
        )
    except asyncpg.UniqueViolationError as exc:
        field = "email" if "email" in (exc.constraint_name or "") else "username"
        raise AccountError(field, "is already taken") from None


async def hash_password_off_loop(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


_DUMMY_HASH = hash_password("streamd dummy password, never valid")


async def verify_password_off_loop(password_hash: str | None, password: str) -> bool:
    """Verify in a worker thread. With no hash (unknown account) a dummy hash is verified
    anyway, so "no such user" and "wrong password" take the same time."""
    if password_hash is None:
        await asyncio.to_thread(verify_password, _DUMMY_HASH, password)
        return False
    return await asyncio.to_thread(verify_password, password_hash, password)
