"""``/api/users``: your own account, public profiles, and the admin's user management."""

from __future__ import annotations

import logging
from typing import NoReturn

from db import auth as auth_db
from db import lives, throttle, users
from web.accounts import (
    USERNAME,
    AccountError,
    check_password,
    hash_password_off_loop,
    verify_password_off_loop,
)
from web.api import Call, Endpoint, decode_cursor, paginate
from web.authn import unauthorized
from web.errors import ApiError, field_error
from web.lives import forget_live
from web.schemas import (
    AdminUserIn,
    LiveListOut,
    LiveOut,
    PageQuery,
    ProfileOut,
    UpdateMeIn,
    UserListOut,
    UserListQuery,
    UserOut,
)

log = logging.getLogger(__name__)


async def get_me(call: Call) -> UserOut:
    user = await users.get_by_id(call.db.primary, call.user.id)
    assert user is not None  # authenticate() just read it
    return UserOut.from_row(user)


async def update_me(call: Call) -> UserOut:
    body = await call.body(UpdateMeIn)
    me = call.user
    changes = {
        column: getattr(body, name)
        for name, column in (("bio", "bio"), ("avatar_url", "avatar"))
        if name in body.model_fields_set
    }
    if body.new_password is not None:
        await _change_password(call, body.current_password, body.new_password)
    elif body.current_password is not None:
        raise field_error("new_password", "give the new password with current_password")
    user = await users.update_profile(call.db.primary, me.id, changes=changes)
    assert user is not None
    return UserOut.from_row(user)


async def _change_password(call: Call, current: str | None, new: str) -> None:
    me = call.user
    if current is None:
        raise field_error("current_password", "needed to change the password")
    # Guesses with a stolen access token are counted against its session, which the limit
    # ends: a lock on the account would lock its owner out of every other session and login.
    # The count spans the session's whole life (a stolen session gets no fresh guesses by
    # waiting), and it is checked before the hash: guesses sent at once all got past
    # authentication before the one at the limit ended the session.
    key = f"session:{me.session_id}"
    settings = call.settings
    (attempts, _), = (await throttle.count_attempt(
        call.db.primary, [key], window_s=settings.refresh_token_ttl
    )).values()  # fmt: skip
    if attempts > settings.login_max_failures:
        await _end_guessed_session(call, attempts)
    password_hash = await users.get_password_hash(call.db.primary, me.id)
    if not await verify_password_off_loop(password_hash, current):
        if attempts >= settings.login_max_failures:
            await _end_guessed_session(call, attempts)
        raise field_error("current_password", "is not your current password")
    try:
        check_password(new, username=me.username, email=me.email, field="new_password")
    except AccountError as exc:
        raise field_error(exc.field, exc.message) from None
    new_hash = await hash_password_off_loop(new)
    async with call.db.primary.acquire() as conn, conn.transaction():
        await users.set_password_hash(conn, me.id, new_hash)
        await auth_db.revoke_user_sessions(conn, me.id, reason="password_changed")
        await auth_db.forget_devices(conn, me.id)
    await throttle.forgive(call.db.primary, clear=[key], give_back=[])


async def _end_guessed_session(call: Call, attempts: int) -> NoReturn:
    me = call.user
    await auth_db.revoke_session(
        call.db.primary, me.session_id, user_id=me.id, reason="password_guesses"
    )
    log.warning("session %s of user %d ended after %d wrong current passwords",
                me.session_id, me.id, attempts)  # fmt: skip
    raise unauthorized("too many wrong passwords: this session has ended; log in again")


async def my_lives(call: Call) -> LiveListOut:
    query = call.query(PageQuery)
    rows = await lives.list_by_owner(
        call.db.read, call.user.id, before_id=decode_cursor(query.cursor), limit=query.limit + 1
    )
    page, cursor = paginate(rows, query.limit)
    base, whep = call.settings.hls_base_url(), call.settings.whep_base_url()
    return LiveListOut(items=[LiveOut.from_row(r, base, whep) for r in page], next_cursor=cursor)


async def get_profile(call: Call) -> ProfileOut:
    username = call.path_str("username")
    user = None
    if USERNAME.fullmatch(username):  # anything else names no one (and never reaches SQL)
        user = await users.get_by_username(call.db.read, username)
    if user is None or not user["is_active"]:
        raise ApiError(404, "not_found", "no such user")
    return ProfileOut.from_row(user)


async def list_users(call: Call) -> UserListOut:
    query = call.query(UserListQuery)
    rows = await users.list_page(
        call.db.primary, before_id=decode_cursor(query.cursor), limit=query.limit + 1,
        role=query.role, active=query.active,
    )  # fmt: skip
    page, cursor = paginate(rows, query.limit)
    return UserListOut(items=[UserOut.from_row(r) for r in page], next_cursor=cursor)


async def admin_update_user(call: Call) -> UserOut:
    user_id = call.path_id("user_id")
    body = await call.body(AdminUserIn)
    if user_id == call.user.id and (body.role not in (None, "admin") or body.is_active is False):
        raise ApiError(409, "conflict", "admins cannot demote or deactivate themselves")
    user = await users.set_role_and_active(
        call.db.primary, user_id, role=body.role, is_active=body.is_active
    )
    if user is None:
        raise ApiError(404, "not_found", "no such user")
    if body.is_active is False:
        await _end_everything_of(call, user_id)
    elif body.role is not None and user["role"] not in ("creator", "admin"):
        # No longer a role that may stream (web.api's "creator"): the ingest gate refuses its
        # new publishes, and the running ones are cut as for a deactivation. Its sessions stay.
        stopped = await _stop_publishes_of(call, user_id, "account may no longer stream")
        log.info("user %d made %s by admin %d: %d publish(es) stopped",
                 user_id, user["role"], call.user.id, stopped)  # fmt: skip
    return UserOut.from_row(user)


async def _end_everything_of(call: Call, user_id: int) -> None:
    """A deactivated account: its sessions end, and its publishes are stopped (new ones are
    refused by the ingest gate, which checks the owner is active)."""
    ended = await auth_db.revoke_user_sessions(call.db.primary, user_id, reason="deactivated")
    await _stop_publishes_of(call, user_id, "account deactivated")
    log.info("user %d deactivated by admin %d: %d session(s) ended", user_id, call.user.id, ended)


async def _stop_publishes_of(call: Call, user_id: int, reason: str) -> int:
    """Cut the user's publishes on air: here when this process holds them, elsewhere through
    ``request_stop``'s NOTIFY live_control. How many lives were on air."""
    live_ids = await lives.live_ids_of_user(call.db.primary, user_id)
    for live_id in live_ids:
        if call.stop_live is not None:
            call.stop_live(live_id, reason)
        await lives.request_stop(call.db.primary, live_id, reason)
        await forget_live(call, live_id)
    return len(live_ids)


ENDPOINTS = [
    Endpoint("GET", "/api/users/me", get_me, "Your account", "users", auth="user",
             response=UserOut),
    Endpoint("PATCH", "/api/users/me", update_me,
             "Change your bio, avatar URL or password (a new password ends every session)",
             "users", auth="user", body=UpdateMeIn, response=UserOut),
    Endpoint("GET", "/api/users/me/lives", my_lives, "Your lives, every status, newest first",
             "users", auth="user", query=PageQuery, response=LiveListOut),
    Endpoint("GET", "/api/users/{username}", get_profile, "A user's public profile", "users",
             response=ProfileOut),
    Endpoint("GET", "/api/admin/users", list_users, "List users, newest first", "admin",
             auth="admin", query=UserListQuery, response=UserListOut),
    Endpoint("PATCH", "/api/admin/users/{user_id:int}", admin_update_user,
             "Change a user's role, or deactivate/reactivate the account", "admin",
             auth="admin", body=AdminUserIn, response=UserOut, errors=(409,)),
]  # fmt: skip
