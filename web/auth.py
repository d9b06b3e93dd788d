"""``/api/auth``: register, login, refresh, logout, email verification, password reset.

Two ways to carry the refresh token, chosen per request by ``X-Token-Transport``:

- ``json`` (the default; API clients, apps): in the JSON bodies, as ``refresh_token``;
- ``cookie`` (the browser app): never in JSON (``"refresh_token": null``), only in the HttpOnly
  cookie ``streamd_refresh`` (``SameSite=Strict``, path /api/auth), so no script on the page,
  an injected one included, can read it. A refresh from the cookie needs the header: a custom
  header makes a cross-origin request preflighted, which CORS refuses, so no other site (not
  even a sibling subdomain, which SameSite counts as the same site) can make the browser
  spend the cookie with a bodiless no-cors POST.
"""

from __future__ import annotations

import contextlib
import logging
import math

import asyncpg
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response

from chat.viewers import address_group
from db import auth as auth_db
from db import throttle, users
from web.accounts import (
    AccountError,
    check_password,
    create_user,
    hash_password_off_loop,
    verify_password_off_loop,
)
from web.api import Call, Endpoint, HeaderParam
from web.authn import (
    DEVICE_COOKIE,
    DEVICE_TTL_S,
    DEVICES_PER_USER,
    REFRESH_COOKIE,
    device_cookie,
    is_https,
    new_secret_token,
    open_pair,
    refresh_cookie,
    seal_pair,
    set_auth_cookie,
    token_digest,
    unauthorized,
)
from web.errors import ApiError, error_response, field_error
from web.mail import Mail, MailError
from web.schemas import (
    Accepted,
    LoginIn,
    LogoutIn,
    PasswordResetConfirmIn,
    PasswordResetIn,
    RefreshIn,
    RegisterIn,
    TokenOut,
    UserOut,
    VerifyEmailIn,
)

log = logging.getLogger(__name__)

VERIFY_EMAIL_TTL_S = 48 * 3600.0
RESET_PASSWORD_TTL_S = 3600.0

TOKEN_TRANSPORT = HeaderParam(
    "X-Token-Transport", ("json", "cookie"),
    "cookie: the refresh token travels only in the HttpOnly cookie streamd_refresh "
    '(JSON bodies carry "refresh_token": null); json (the default): in the JSON bodies',
)  # fmt: skip


def cookie_mode(call: Call) -> bool:
    """The request chose cookie mode (``X-Token-Transport: cookie``); 422 for other values
    than ``cookie`` and ``json``, before anything is counted or changed."""
    value = call.request.headers.get(TOKEN_TRANSPORT.name)
    if value is None or value.strip().lower() == "json":
        return False
    if value.strip().lower() == "cookie":
        return True
    raise field_error(TOKEN_TRANSPORT.name, "must be cookie or json")


def _set_refresh_cookie(call: Call, response: Response, token: str) -> None:
    secure = is_https(call.request, call.settings.http_base_url())
    set_auth_cookie(response, REFRESH_COOKIE, token,
                    max_age=int(call.settings.refresh_token_ttl), secure=secure)  # fmt: skip


def _clear_refresh_cookie(call: Call, response: Response) -> None:
    secure = is_https(call.request, call.settings.http_base_url())
    set_auth_cookie(response, REFRESH_COOKIE, "", max_age=0, secure=secure)


def _token_response(call: Call, tokens: TokenOut, *, cookie: bool, status: int = 200
                    ) -> JSONResponse:  # fmt: skip
    """``tokens`` as JSON; in cookie mode without the refresh token, which goes in the cookie."""
    refresh = tokens.refresh_token
    if cookie:
        tokens = tokens.model_copy(update={"refresh_token": None})
    response = JSONResponse(tokens.model_dump(mode="json"), status_code=status)
    if cookie:
        assert refresh is not None
        _set_refresh_cookie(call, response, refresh)
    return response


async def start_session(
    call: Call, user: asyncpg.Record, *, known_device: str | None = None, status: int = 200,
    cookie: bool = False,
) -> JSONResponse:  # fmt: skip
    """A new login session for ``user`` (its first refresh token and an access token), and
    the device cookie: ``known_device``'s renewed, or a new one. ``cookie``: cookie mode."""
    refresh, digest = new_secret_token()
    session_id = await auth_db.create_session(
        call.db.primary, user_id=user["id"], token_hash=digest,
        ttl=call.settings.refresh_token_ttl, user_agent=call.user_agent, ip=call.client_ip,
    )  # fmt: skip
    access = call.keys.issue(user_id=user["id"], session_id=session_id, role=user["role"])
    tokens = TokenOut(
        access_token=access, refresh_token=refresh, expires_in=int(call.keys.ttl_s),
        user=UserOut.from_row(user),
    )  # fmt: skip
    device = known_device
    if device is not None:
        await auth_db.touch_device(call.db.primary, digest=token_digest(device), ttl=DEVICE_TTL_S)
    else:
        device, device_digest = new_secret_token()
        await auth_db.add_device(call.db.primary, digest=device_digest, user_id=user["id"],
                                 ttl=DEVICE_TTL_S, keep=DEVICES_PER_USER)  # fmt: skip
    response = _token_response(call, tokens, cookie=cookie, status=status)
    secure = is_https(call.request, call.settings.http_base_url())
    set_auth_cookie(response, DEVICE_COOKIE, device, max_age=int(DEVICE_TTL_S), secure=secure)
    return response


async def send_verification(call: Call, user_id: int, email: str) -> None:
    token, digest = new_secret_token()
    await auth_db.create_account_token(
        call.db.primary, user_id=user_id, purpose="verify_email", email=email,
        token_hash=digest, ttl=VERIFY_EMAIL_TTL_S,
    )  # fmt: skip
    link = f"{call.settings.http_base_url()}/verify-email?token={token}"
    await call.mailer.send(Mail(
        to=email, subject="Confirm your email address for streamd", kind="verify_email",
        body=f"Open this link to confirm your address:\n\n  {link}\n\n"
             f"(or POST {{\"token\": \"{token}\"}} to /api/auth/verify-email)\n"
             "The link is valid for 48 hours. If you did not sign up, ignore this message.\n",
    ))  # fmt: skip


def _refuse_over_limits(
    call: Call, counts: dict[str, tuple[int, float]], limits: dict[str, int], what: str
) -> None:
    """429 with ``Retry-After`` when a counter passed its limit."""
    waits = [remaining for key, (n, remaining) in counts.items() if n > limits[key]]
    if waits:
        retry = str(max(1, math.ceil(max(waits))))
        log.info("%s from %s refused for %s s", what, call.client_ip, retry)
        raise ApiError(429, "too_many_attempts", f"too many {what}; try again in {retry} s",
                       headers={"Retry-After": retry})  # fmt: skip


async def register(call: Call) -> JSONResponse:
    cookie = cookie_mode(call)
    body = await call.body(RegisterIn)
    settings = call.settings
    # Counted before the argon2 hash and before the "taken" answer, per client address and per
    # target address: probing which emails have accounts costs hours, not seconds.
    # An IPv6 client counts by its /64 (chat.viewers.address_group): one subscriber's devices
    # pick addresses inside it at will.
    client = address_group(call.client_ip)
    ip_key, email_key = f"register-ip:{client}", f"register-email:{body.email.lower()}"
    counts = await throttle.count_attempt(
        call.db.primary, [ip_key, email_key], window_s=settings.register_window
    )
    limits = {ip_key: settings.register_max_per_ip, email_key: settings.register_max_per_email}
    _refuse_over_limits(call, counts, limits, "registration attempts")
    try:
        user = await create_user(
            call.db.primary, username=body.username, email=body.email, password=body.password,
            role="viewer",
        )  # fmt: skip
    except AccountError as exc:
        if exc.message == "is already taken":
            if exc.field == "email":
                await _tell_owner_of_taken_email(call, body.email)
            raise ApiError(
                409,
                "already_taken",
                f"{exc.field} is already taken",
                details=[{"field": exc.field, "message": exc.message}],
            ) from None
        raise field_error(exc.field, exc.message) from None
    try:
        await send_verification(call, user["id"], user["email"])
    except MailError:
        log.warning("user %s registered, but the verification mail failed", user["username"])
    return await start_session(call, user, status=201, cookie=cookie)


async def _tell_owner_of_taken_email(call: Call, email: str) -> None:
    """Mail the owner of ``email`` that someone tried to register with it: at most one such
    mail per address per registration window, so that it cannot be used to spam them."""
    window = call.settings.register_window
    (sent, _), = (await throttle.count_attempt(
        call.db.primary, [f"register-notice:{email.lower()}"], window_s=window
    )).values()  # fmt: skip
    owner = await users.get_by_email(call.db.primary, email) if sent == 1 else None
    if owner is None:
        return
    base = call.settings.http_base_url()
    try:
        await call.mailer.send(Mail(
            to=owner["email"], subject="Someone tried to sign up to streamd with your address",
            kind="registration_attempt",
            body="Someone just tried to create a new streamd account with this email address.\n"
                 "You already have an account, so nothing was created and nothing changed.\n\n"
                 f"If it was you: log in at {base} (your username is {owner['username']}), "
                 "or ask there for a password-reset link.\n"
                 "If it was not you, you can ignore this message. You get at most one such "
                 f"message every {window / 60:g} minutes.\n",
        ))  # fmt: skip
    except MailError:
        log.warning("the 'address taken' mail to user %s failed", owner["id"])


async def login(call: Call) -> JSONResponse:
    cookie = cookie_mode(call)
    body = await call.body(LoginIn)
    settings = call.settings
    user = await users.get_login(call.db.primary, body.username)
    device = device_cookie(call.request)
    if device is not None and (
        user is None
        or not await auth_db.is_trusted_device(
            call.db.primary, digest=token_digest(device), user_id=user["id"]
        )
    ):
        device = None  # unknown, expired, forged, or another account's: an untrusted client
    # A device that signed in to this account before is counted on a key of its own: the
    # failures of everyone else, counted on the account's key, cannot lock the owner out.
    if device is not None:
        account_key = f"device:{token_digest(device).hex()}"
    else:
        account_key = f"user:{user['id']}" if user else f"login:{body.username.lower()}"
    ip_key = f"ip:{address_group(call.client_ip)}"
    counts = await throttle.count_attempt(
        call.db.primary, [account_key, ip_key], window_s=settings.login_window
    )
    limits = {account_key: settings.login_max_failures, ip_key: settings.login_max_failures_per_ip}
    _refuse_over_limits(call, counts, limits, "failed logins")
    password_hash = user["password_hash"] if user else None
    verified = await verify_password_off_loop(password_hash, body.password)
    # A deactivated account gets the answer of a wrong password, whatever the password: a
    # different one would confirm the password to whoever guessed it.
    if not verified or user is None or not user["is_active"]:
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    await throttle.forgive(call.db.primary, clear=[account_key], give_back=[ip_key])
    return await start_session(call, user, known_device=device, cookie=cookie)


_REFRESH_REFUSED = {
    "unknown": "unknown refresh token",
    "expired": "refresh token expired; log in again",
    "revoked": "this session has ended; log in again",
    "reused": "refresh token already used: the session is revoked; log in again",
    "inactive": "this account is deactivated",
}


async def refresh(call: Call) -> Response:
    cookie = cookie_mode(call)
    body = await call.body(RefreshIn)
    if not cookie:
        if body.refresh_token is not None:
            return _token_response(call, await _rotate(call, body.refresh_token), cookie=False)
        if REFRESH_COOKIE in call.request.cookies:
            # Refused without a trace: a request that did not choose cookie mode may be one
            # another site made the browser send (see the module's docstring).
            raise ApiError(403, "token_transport_required", f"a refresh from the {REFRESH_COOKIE} "
                           "cookie needs the header X-Token-Transport: cookie")  # fmt: skip
        raise field_error("refresh_token", "Field required")
    if body.refresh_token is not None:
        raise field_error("refresh_token", f"leave it out in cookie mode: the {REFRESH_COOKIE} "
                          "cookie carries the token")  # fmt: skip
    used = refresh_cookie(call.request)
    try:
        if used is None:
            raise unauthorized(f"no {REFRESH_COOKIE} cookie; log in again")
        tokens = await _rotate(call, used)
    except ApiError as exc:
        # A cookie that failed once fails for good (used, expired, session ended): drop it.
        response = error_response(exc.status, exc.code, exc.message, exc.headers, exc.details)
        _clear_refresh_cookie(call, response)
        return response
    return _token_response(call, tokens, cookie=True)


async def _rotate(call: Call, used: str) -> TokenOut:
    """Trade the refresh token ``used`` for a new pair (again within the grace: the same
    pair); 401 when it cannot be."""
    used_digest = token_digest(used)
    grace = call.settings.refresh_reuse_grace
    new_token, new_digest = new_secret_token()
    pair: tuple[str, str] | None = None
    # One transaction: uses of one token at once wait on its row lock, and find the pair the
    # first one stored (within the grace) instead of a reuse that would end the session.
    async with call.db.primary.acquire() as conn, conn.transaction():
        rotation = await auth_db.rotate_refresh_token(
            conn, token_hash=used_digest, new_hash=new_digest,
            ttl=call.settings.refresh_token_ttl, grace_s=grace,
        )  # fmt: skip
        if rotation.outcome == "rotated":
            user_id, session_id, role = rotation.user_id, rotation.session_id, rotation.role
            assert user_id is not None and session_id is not None and role is not None
            access = call.keys.issue(user_id=user_id, session_id=session_id, role=role)
            pair = (new_token, access)
            if grace > 0:
                await auth_db.keep_successor(
                    conn, token_hash=used_digest, sealed=seal_pair(used, new_token, access)
                )
        elif rotation.outcome == "replayed":
            assert rotation.successor is not None
            pair = open_pair(used, rotation.successor)
            log.info("refresh token of session %s presented again within the grace: the same "
                     "pair returned", rotation.session_id)  # fmt: skip
    # Outside the transaction: a refusal must not roll back the revocation of a reused token.
    if rotation.outcome == "reused":
        log.warning("refresh token reuse: session %s of user %s revoked",
                    rotation.session_id, rotation.user_id)  # fmt: skip
    if pair is None:
        raise unauthorized(_REFRESH_REFUSED.get(rotation.outcome, "unknown refresh token"))
    assert rotation.user_id is not None
    user = await users.get_by_id(call.db.primary, rotation.user_id)
    assert user is not None  # the session's user: sessions are deleted with their user
    return TokenOut(
        access_token=pair[1], refresh_token=pair[0], expires_in=int(call.keys.ttl_s),
        user=UserOut.from_row(user),
    )  # fmt: skip


async def logout(call: Call) -> Response | None:
    cookie = cookie_mode(call)
    body = await call.body(LogoutIn)
    me = call.user
    if cookie and body.refresh_token is not None:
        raise field_error("refresh_token", f"leave it out in cookie mode: the {REFRESH_COOKIE} "
                          "cookie names the session")  # fmt: skip
    if body.everywhere:
        await auth_db.revoke_user_sessions(call.db.primary, me.id, reason="logout_everywhere")
    else:
        sessions = {me.session_id}
        named = body.refresh_token if not cookie else refresh_cookie(call.request)
        if named is not None:
            found = await auth_db.session_of_refresh_token(call.db.primary, token_digest(named))
            if found is None and not cookie:
                raise field_error("refresh_token", "unknown refresh token")
            if not cookie:
                sessions = set()
            if found is not None:
                sessions.add(found)
        # Cookie mode: the browser is done with both the session of its access token and the
        # one of its cookie (the same one, unless something went astray).
        for session_id in sessions:
            if not await auth_db.revoke_session(call.db.primary, session_id, user_id=me.id,
                                                reason="logout"):  # fmt: skip
                # Not this user's session, or already ended: say nothing about other people's
                # tokens.
                log.info("logout of user %s named a session that is not theirs or ended", me.id)
    if not cookie:
        return None
    response = Response(status_code=204)
    _clear_refresh_cookie(call, response)
    return response


async def verify_email(call: Call) -> UserOut:
    body = await call.body(VerifyEmailIn)
    used = await auth_db.use_account_token(
        call.db.primary, token_hash=token_digest(body.token), purpose="verify_email"
    )
    user = None
    if used is not None:
        user = await users.mark_email_verified(call.db.primary, used["user_id"], used["email"])
    if user is None:
        raise ApiError(400, "invalid_token", "this verification link is invalid or expired")
    return UserOut.from_row(user)


async def resend_verification(call: Call) -> Accepted:
    user = await users.get_by_id(call.db.primary, call.user.id)
    assert user is not None
    if user["email_verified_at"] is not None:
        return Accepted(message="this email address is already verified")
    try:
        await send_verification(call, user["id"], user["email"])
    except MailError:
        raise ApiError(503, "mail_unavailable", "the mail could not be sent; retry later",
                       headers={"Retry-After": "60"}) from None  # fmt: skip
    return Accepted(message=f"a verification link was sent to {user['email']}")


async def request_password_reset(call: Call) -> JSONResponse:
    body = await call.body(PasswordResetIn)
    # The same answer, at the same speed, whether or not the address has an account: the
    # lookup and the mail happen after the response.
    reply = Accepted(message="if an account has this address, a reset link was sent to it")
    return JSONResponse(reply.model_dump(), status_code=202,
                        background=BackgroundTask(_send_reset, call, body.email))  # fmt: skip


async def _send_reset(call: Call, email: str) -> None:
    user = await users.get_by_email(call.db.primary, email)
    if user is None or not user["is_active"]:
        return
    token, digest = new_secret_token()
    await auth_db.create_account_token(
        call.db.primary, user_id=user["id"], purpose="reset_password", email=user["email"],
        token_hash=digest, ttl=RESET_PASSWORD_TTL_S,
    )  # fmt: skip
    link = f"{call.settings.http_base_url()}/reset-password?token={token}"
    with contextlib.suppress(MailError):  # logged by the mailer; the person can ask again
        await call.mailer.send(Mail(
            to=user["email"], subject="Reset your streamd password", kind="reset_password",
            body=f"Open this link to choose a new password:\n\n  {link}\n\n"
                 f"(or POST {{\"token\": \"{token}\", \"new_password\": ...}} to "
                 "/api/auth/password-reset/confirm)\n"
                 "The link is valid for one hour and works once. If you did not ask for it, "
                 "ignore this message: your password is unchanged.\n",
        ))  # fmt: skip


async def confirm_password_reset(call: Call) -> UserOut:
    body = await call.body(PasswordResetConfirmIn)
    async with call.db.primary.acquire() as conn, conn.transaction():
        # Consumed inside the transaction: a new password that breaks a rule rolls it back,
        # so the link still works for a second try.
        used = await auth_db.use_account_token(
            conn, token_hash=token_digest(body.token), purpose="reset_password"
        )
        user = await users.get_by_id(conn, used["user_id"]) if used else None
        if user is None or not user["is_active"]:
            raise ApiError(400, "invalid_token", "this reset link is invalid or expired")
        try:
            check_password(body.new_password, username=user["username"], email=user["email"],
                           field="new_password")  # fmt: skip
        except AccountError as exc:
            raise field_error(exc.field, exc.message) from None
        await users.set_password_hash(
            conn, user["id"], await hash_password_off_loop(body.new_password)
        )
        await auth_db.revoke_user_sessions(conn, user["id"], reason="password_reset")
        await auth_db.forget_devices(conn, user["id"])
    return UserOut.from_row(user)


ENDPOINTS = [
    Endpoint("POST", "/api/auth/register", register, "Create an account (role viewer) and log in",
             "auth", body=RegisterIn, response=TokenOut, status=201, errors=(409, 429),
             headers=(TOKEN_TRANSPORT,)),
    Endpoint("POST", "/api/auth/login", login,
             "Log in with username or email and password (sets the device cookie)",
             "auth", body=LoginIn, response=TokenOut, errors=(401, 429),
             headers=(TOKEN_TRANSPORT,)),
    Endpoint("POST", "/api/auth/refresh", refresh,
             "Trade a refresh token (JSON, or the cookie with X-Token-Transport: cookie) for a "
             "new pair (each refresh token works once)",
             "auth", body=RefreshIn, response=TokenOut, errors=(401, 403),
             headers=(TOKEN_TRANSPORT,)),
    Endpoint("POST", "/api/auth/logout", logout,
             "End this session (or the one of a refresh token, or every session); clears the "
             "refresh cookie in cookie mode", "auth", auth="user", body=LogoutIn,
             headers=(TOKEN_TRANSPORT,)),
    Endpoint("POST", "/api/auth/verify-email", verify_email,
             "Confirm an email address with the token sent by mail", "auth",
             body=VerifyEmailIn, response=UserOut, errors=(400,)),
    Endpoint("POST", "/api/auth/verify-email/resend", resend_verification,
             "Send a new verification mail", "auth", auth="user", response=Accepted,
             status=202, errors=(503,)),
    Endpoint("POST", "/api/auth/password-reset", request_password_reset,
             "Mail a password-reset link (same answer whether or not the address is known)",
             "auth", body=PasswordResetIn, response=Accepted, status=202),
    Endpoint("POST", "/api/auth/password-reset/confirm", confirm_password_reset,
             "Set a new password with the mailed token; ends every session", "auth",
             body=PasswordResetConfirmIn, response=UserOut, errors=(400,)),
]  # fmt: skip
