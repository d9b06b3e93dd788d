"""Request and response bodies of the API (pydantic), shared with the OpenAPI document.

Every string that reaches the database goes through :data:`Text`, which refuses NUL characters
and unpaired surrogates (PostgreSQL cannot store either): a 422, never a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import asyncpg
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from web.accounts import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    USERNAME,
    AccountError,
    check_email,
    check_password,
    check_username,
)
from web.payments import money

Role = Literal["viewer", "creator", "admin"]
LiveStatus = Literal["offline", "scheduled", "live", "ended"]


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _rule(check: Any) -> Any:
    """Turn an account rule (raises AccountError) into a pydantic validator with its message."""

    def validate(value: str) -> str:
        try:
            result: str = check(value)
        except AccountError as exc:
            raise ValueError(exc.message) from None
        return result

    return AfterValidator(validate)


def _when(value: AwareDatetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be between the years 1970 and 9999") from None
    if not 1970 <= utc.year <= 9998:
        raise ValueError("must be between the years 1970 and 9999")
    return utc


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        raise ValueError("must be an http:// or https:// URL")
    return value


Text = Annotated[str, AfterValidator(_storable)]
Token = Annotated[Text, Field(min_length=1, max_length=200)]
Username = Annotated[
    str, Field(json_schema_extra={"pattern": USERNAME.pattern}), _rule(check_username)
]
Email = Annotated[
    Text, Field(max_length=255, json_schema_extra={"format": "email"}), _rule(check_email)
]
Password = Annotated[Text, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]
When = Annotated[AwareDatetime, AfterValidator(_when)]
Title = Annotated[Text, Field(min_length=1, max_length=100)]
Description = Annotated[Text, Field(max_length=5000)]
Bio = Annotated[Text, Field(max_length=2000)]
AvatarUrl = Annotated[Text, Field(max_length=500), AfterValidator(_http_url)]
Cursor = Annotated[Text, Field(max_length=100)]
Limit = Annotated[int, Field(ge=1, le=100)]


class Body(BaseModel):
    """Request bodies: unknown fields are an error (a typo must not pass silently), and types
    are strict (``0`` is not ``false``, ``"5"`` is not ``5``)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """Query strings: unknown parameters are ignored, as browsers and proxies add some."""

    model_config = ConfigDict(extra="ignore")


# --- auth ---


class RegisterIn(Body):
    username: Username
    email: Email
    password: Password

    @field_validator("password")
    @classmethod
    def _password_rules(cls, password: str, info: ValidationInfo) -> str:
        try:
            return check_password(
                password,
                username=info.data.get("username", ""),
                email=info.data.get("email", ""),
            )
        except AccountError as exc:
            raise ValueError(exc.message) from None


class LoginIn(Body):
    username: Annotated[Text, Field(min_length=1, max_length=255)] = Field(
        description="username or email address"
    )
    password: Annotated[Text, Field(min_length=1, max_length=PASSWORD_MAX)]


class RefreshIn(Body):
    refresh_token: Token | None = Field(
        default=None,
        description="required, unless X-Token-Transport: cookie (then leave it out: the token "
        "comes from the streamd_refresh cookie)",
    )


class LogoutIn(Body):
    refresh_token: Token | None = Field(
        default=None,
        description="end the session of this refresh token (default: this one); not with "
        "X-Token-Transport: cookie",
    )
    everywhere: bool = Field(default=False, description="end every session of the account")


class VerifyEmailIn(Body):
    token: Token


class PasswordResetIn(Body):
    email: Annotated[Text, Field(min_length=1, max_length=255)]


class PasswordResetConfirmIn(Body):
    token: Token
    new_password: Password


class UserOut(BaseModel):
    id: int
    username: str
    email: str
    email_verified: bool
    role: Role
    bio: str | None
    avatar_url: str | None
    is_active: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> UserOut:
        return cls(
            id=row["id"], username=row["username"], email=row["email"],
            email_verified=row["email_verified_at"] is not None, role=row["role"],
            bio=row["bio"], avatar_url=row["avatar"], is_active=row["is_active"],
            created_at=row["created_at"],
        )  # fmt: skip


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str | None = Field(
        description="null with X-Token-Transport: cookie: the refresh token is then only in "
        "the HttpOnly cookie streamd_refresh"
    )
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type
    expires_in: int = Field(description="seconds the access token is valid")
    user: UserOut


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    message: str


# --- users ---


class UpdateMeIn(Body):
    bio: Bio | None = None
    avatar_url: AvatarUrl | None = None
    current_password: Annotated[Text, Field(min_length=1, max_length=PASSWORD_MAX)] | None = None
    new_password: Password | None = Field(
        default=None,
        description="needs current_password; ends every session, this one included",
    )


class ProfileOut(BaseModel):
    id: int
    username: str
    role: Role
    bio: str | None
    avatar_url: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ProfileOut:
        return cls(
            id=row["id"], username=row["username"], role=row["role"], bio=row["bio"],
            avatar_url=row["avatar"], created_at=row["created_at"],
        )  # fmt: skip


class UserListQuery(Query):
    cursor: Cursor | None = None
    limit: Limit = 20
    role: Role | None = None
    active: bool | None = None


class UserListOut(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class AdminUserIn(Body):
    role: Role | None = None
    is_active: bool | None = Field(default=None, description="false deactivates the account")


# --- prices (web.payments sells lives and videos) ---

Currency = Literal["USD", "TWD"]
Amount = Annotated[int, Field(ge=1, le=99_999_999, description="ISO 4217 minor units")]


class PriceIn(Body):
    amount: Amount
    currency: Currency

    @model_validator(mode="after")
    def _chargeable(self) -> PriceIn:
        try:
            money.check_amount(self.amount, self.currency)
        except money.AmountError as exc:
            raise ValueError(str(exc)) from None
        return self


class PriceOut(BaseModel):
    amount: int = Field(description="ISO 4217 minor units")
    currency: str
    display: str = Field(description="e.g. US$4.99, NT$150")

    @classmethod
    def of(cls, amount: int | None, currency: str | None) -> PriceOut | None:
        if amount is None or currency is None:
            return None
        return cls(amount=amount, currency=currency, display=money.display(amount, currency))


# --- lives ---


class LiveCreateIn(Body):
    title: Title
    description: Description | None = None
    scheduled_start: When | None = None
    chat_enabled: bool = True
    price: PriceIn | None = Field(
        default=None, description="a ticket price: playback and chat posting need a ticket"
    )


class LiveUpdateIn(Body):
    title: Title | None = None
    description: Description | None = None
    scheduled_start: When | None = Field(default=None, description="null clears the schedule")
    chat_enabled: bool | None = None
    price: PriceIn | None = Field(default=None, description="null makes the live free")


class LiveOut(BaseModel):
    id: int
    title: str
    description: str | None
    user_id: int
    username: str
    status: LiveStatus
    scheduled_start: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    viewer_count: int
    chat_enabled: bool
    playback_url: str
    whep_url: str | None = Field(
        default=None,
        description="WebRTC playback (WHEP, under a second behind) while the live is on air; "
        "null when off air or when this server offers none",
    )
    thumbnail_url: str | None
    price: PriceOut | None = Field(description="the ticket price; null when free")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record, base_url: str, whep_base: str | None = None) -> LiveOut:
        """``base_url``: ``Settings.hls_base_url()``, the CDN when one is configured;
        ``whep_base``: ``Settings.whep_base_url()``."""
        hls = f"{base_url}/hls/{row['id']}"
        return cls(
            id=row["id"], title=row["title"], description=row["description"],
            user_id=row["user_id"], username=row["username"], status=row["status"],
            scheduled_start=row["scheduled_start"], start_time=row["start_time"],
            end_time=row["end_time"], viewer_count=row["viewer_count"],
            chat_enabled=row["chat_enabled"], playback_url=f"{hls}/master.m3u8",
            whep_url=f"{whep_base}/{row['id']}" if whep_base and row["status"] == "live" else None,
            # The poster the packager wrote (set once it exists): of the broadcast on air only.
            thumbnail_url=media_url(base_url, row["thumbnail_url"])
            if row["status"] == "live" and row["thumbnail_url"] else None,
            price=PriceOut.of(row["price_amount"], row["price_currency"]),
            created_at=row["created_at"], updated_at=row["updated_at"],
        )  # fmt: skip


class LiveListQuery(Query):
    status: Literal["live", "scheduled", "ended"] | None = Field(
        default=None, description="default: live, scheduled and ended"
    )
    user: Annotated[Text, Field(max_length=50)] | None = Field(
        default=None, description="only this user's lives (username)"
    )
    cursor: Cursor | None = None
    limit: Limit = 20


class PageQuery(Query):
    cursor: Cursor | None = None
    limit: Limit = 20


class LiveListOut(BaseModel):
    items: list[LiveOut]
    next_cursor: str | None


class StreamKeyOut(BaseModel):
    stream_key: str


class IngestOut(BaseModel):
    server: str = Field(description="OBS: Settings > Stream > Server")
    stream_key: str = Field(description="OBS: Settings > Stream > Stream Key")
    rtmps_server: str | None = Field(description="the same over TLS, when RTMPS is enabled")
    whip_url: str | None = Field(
        description="OBS 30+: Service WHIP, Server this URL, Bearer Token the stream key; "
        "null when WHIP is off"
    )


class HealthSampleOut(BaseModel):
    """One stream-health sample: the interval since the previous one (packager/health.py)."""

    at: datetime = Field(description="when the sample was taken (ISO 8601)")
    bitrate_kbps: float = Field(description="ingest bitrate, video and audio, in kbit/s")
    video_kbps: float
    audio_kbps: float
    fps: float | None = Field(
        description="video frames per second of media time; null when not measurable yet"
    )
    keyframe_interval_s: float | None = Field(
        description="the last distance between two keyframes (media time); null until two "
        "were seen. Above 2 s, segments grow: the streamer should set a 2 s interval"
    )
    audio: bool = Field(description="audio arrived in the interval")
    video_codec: str | None
    width: int | None
    height: int | None
    rungs: list[str] = Field(description="transcoded rungs being produced")
    rungs_shed: list[str] = Field(description="rungs stopped because the machine fell behind")
    viewer_count: int = Field(description="the live's viewers when the sample was stored")


class LiveHealthOut(BaseModel):
    live_id: int
    status: LiveStatus
    viewer_count: int
    interval: float = Field(description="seconds between samples (STREAMD_HEALTH_INTERVAL)")
    samples: list[HealthSampleOut] = Field(description="the last 10 minutes, oldest first")


class StopOut(BaseModel):
    live: LiveOut
    disconnected: bool = Field(description="a publisher on this server was disconnected")


# --- videos ---


def media_url(base_url: str, stored: str) -> str:
    """A stored media URL as players should fetch it: one relative to the site (local storage,
    S3 without a CDN) is resolved against ``base_url`` (``Settings.hls_base_url()``); an
    absolute one (a CDN's) is kept."""
    if stored.startswith("/") and not stored.startswith("//"):
        return f"{base_url}{stored}"
    return stored


# --- errors (documented on every operation) ---


class FieldErrorOut(BaseModel):
    field: str
    message: str


class ErrorBodyOut(BaseModel):
    code: str
    message: str
    details: list[FieldErrorOut] | None = None


class ErrorOut(BaseModel):
    error: ErrorBodyOut


# --- chat (web/chat.py) ---


class ChatTicketOut(BaseModel):
    ticket: str = Field(description="pass as ?ticket= to /ws/lives/{live_id}/chat; single use")
    expires_in: int = Field(description="seconds the ticket stays valid")


_PlayerId = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class HeartbeatIn(Body):
    player_id: _PlayerId | None = Field(
        default=None,
        description="the player_id of the previous answer; leave it out on the first heartbeat",
    )


class HeartbeatOut(BaseModel):
    player_id: str = Field(
        description="send it with the next heartbeat: the player counts from the first one "
        "that carries an id issued by the server for this live"
    )
    viewer_count: int = Field(description="viewers across every process at the last report")
    interval: int = Field(description="seconds until the next heartbeat is due")


class ModerationEntryOut(BaseModel):
    id: int
    actor_id: int | None
    action: str
    target_user_id: int | None
    message_id: int | None
    duration_s: int | None
    created_at: datetime


class ModerationLogOut(BaseModel):
    items: list[ModerationEntryOut]
