"""Typed settings from environment variables and an optional TOML file.

Every setting has one environment variable (the name users type) and one TOML key (the same
name, lower case, without the ``STREAMD_`` prefix). The environment wins over the file. A bad
value raises :class:`ConfigError` whose message is one line naming the variable, the value and
what is allowed; the CLI prints it and exits non-zero, with no traceback.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from config import parsers as p
from config.parsers import RungSpec

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]
JwtAlgorithm = Literal["HS256", "RS256", "EdDSA"]
SmtpSecurity = Literal["starttls", "tls", "none"]
SegmentFormat = Literal["cmaf", "ts"]
# The transcoded ladder when STREAMD_HLS_LADDER is unset or "default".
DEFAULT_LADDER: tuple[RungSpec, ...] = (
    ("720p", 1280, 720, 30, 3_000_000),
    ("480p", 854, 480, 30, 1_200_000),
    ("360p", 640, 360, 30, 700_000),
)
# The VOD ladder (uploads) when STREAMD_VOD_LADDER is unset or "default": one rung more than
# live, since an upload has no real-time budget; rungs above the source are skipped.
DEFAULT_VOD_LADDER: tuple[RungSpec, ...] = (
    ("1080p", 1920, 1080, 30, 5_000_000),
    *DEFAULT_LADDER,
)
VodBackend = Literal["local", "mediaconvert"]
Mode = Literal["development", "production"]
#: Masked wherever settings are printed.
SECRET_FIELDS = frozenset(
    {
        "jwt_secret",
        "smtp_password",
        "stripe_secret_key",
        "stripe_webhook_secret",
        "ecpay_hash_key",
        "ecpay_hash_iv",
    }
)
GIB = 1 << 30


# The web app's build (Vite writes web/ui/dist), found beside the web package without importing
# it: config/ imports nothing of streamd's.
DEFAULT_UI_DIR = Path(__file__).resolve().parent.parent / "web" / "ui" / "dist"


class ConfigError(Exception):
    """A setting has a value streamd cannot use; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = None
    database_replica_url: str | None = None
    db_pool_min: int = 1
    db_pool_max: int = 10
    http_host: str = "0.0.0.0"  # noqa: S104 - a server is meant to be reachable
    http_port: int = 8080
    rtmp_host: str = "0.0.0.0"  # noqa: S104
    rtmp_port: int = 1935
    rtmp_app: str = "live"
    rtmps_port: int | None = None
    rtmps_cert: Path | None = None
    rtmps_key: Path | None = None
    http_tls_cert: Path | None = None
    http_tls_key: Path | None = None
    rtmp_max_connections: int = 1000
    rtmp_handshake_timeout: float = 10.0
    rtmp_idle_timeout: float = 30.0
    whip_max_publishers: int = 50
    whip_ice_servers: tuple[str, ...] = ()
    whep_max_viewers: int = 200
    whip_turn_username: str | None = None
    whip_turn_credential: str | None = None
    data_dir: Path = Path("./var")
    public_url: str | None = None
    jwt_secret: str | None = None
    log_level: LogLevel = "info"
    log_format: LogFormat = "text"
    cache_cleanup_interval: float = 60.0
    jwt_algorithm: JwtAlgorithm = "HS256"
    jwt_private_key: Path | None = None
    jwt_key_id: str | None = None
    jwt_previous_keys: tuple[tuple[str, Path], ...] = ()
    access_token_ttl: float = 900.0
    refresh_token_ttl: float = 30 * 86400.0
    login_max_failures: int = 5
    login_max_failures_per_ip: int = 50
    login_window: float = 900.0
    register_max_per_ip: int = 10
    register_max_per_email: int = 5
    register_window: float = 3600.0
    refresh_reuse_grace: float = 10.0
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: SmtpSecurity = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str | None = None
    cors_origins: tuple[str, ...] = ()
    api_cache_ttl: float = 2.0
    hls_target_duration: float = 2.0
    hls_window: int = 6
    hls_segment_format: SegmentFormat = "cmaf"
    hls_low_latency: bool = True
    hls_part_target: float = 0.333
    hls_recording: bool = True
    hls_reconnect_window: float = 30.0
    hls_thumbnail_interval: float = 10.0
    hls_ladder: tuple[RungSpec, ...] = DEFAULT_LADDER
    hls_x264_preset: str = "veryfast"
    hls_ladder_shedding: bool = True
    hls_ladder_backlog: float = 3.0
    hls_recovery_interval: float = 60.0
    health_interval: float = 5.0
    storage: str = "local"
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_region: str | None = None
    s3_endpoint_url: str | None = None
    cdn_base_url: str | None = None
    cdn_key_pair_id: str | None = None
    cdn_private_key: Path | None = None
    cdn_signed_url_ttl: float = 3600.0
    chat_rate_limit: int = 5
    chat_rate_window: float = 10.0
    chat_slow_mode_default: int = 30
    chat_report_interval: float = 5.0
    chat_heartbeat_interval: float = 15.0
    chat_send_queue: int = 256
    chat_ticket_ttl: float = 60.0
    trusted_proxies: tuple[str, ...] = ()
    chat_viewers_per_address: int = 4
    ui_dir: Path = DEFAULT_UI_DIR
    upload_max_size: int = 20 * GIB
    upload_part_size: int = 16 << 20
    upload_quota: int = 200 * GIB
    upload_max_concurrent: int = 3
    upload_expiry: float = 24 * 3600.0
    upload_part_url_ttl: float = 6 * 3600.0
    vod_workers: int = 1
    vod_backend: VodBackend = "local"
    vod_ladder: tuple[RungSpec, ...] = DEFAULT_VOD_LADDER
    vod_x264_preset: str = "medium"
    vod_max_duration: float = 6 * 3600.0
    vod_max_width: int = 7680
    vod_max_height: int = 4320
    vod_max_fps: float = 120.0
    vod_job_attempts: int = 3
    vod_job_lease: float = 60.0
    view_window: float = 6 * 3600.0
    mediaconvert_role_arn: str | None = None
    mediaconvert_endpoint_url: str | None = None
    mediaconvert_queue_arn: str | None = None
    mode: Mode = "development"
    payments_providers: tuple[str, ...] = ("sandbox",)
    payments_fee_bps: int = 1000
    payments_order_ttl: float = 1800.0
    payments_refund_window: float = 14 * 86400.0
    payments_tip_minimum: tuple[tuple[str, int], ...] = (("USD", 100), ("TWD", 3000))
    payments_reconcile_interval: float = 60.0
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    ecpay_merchant_id: str | None = None
    ecpay_hash_key: str | None = None
    ecpay_hash_iv: str | None = None
    ecpay_api_base: str | None = None

    @property
    def pg_dir(self) -> Path:
        """Where the embedded PostgreSQL cluster keeps its data."""
        return self.data_dir / "pg"

    @property
    def media_dir(self) -> Path:
        """Root of local storage: ``hls/...`` keys live below it (served at /hls)."""
        return self.data_dir / "media"

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    def http_base_url(self) -> str:
        """The URL printed for browsers: the public URL, or one built from the bind address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.http_tls else "http"
        return f"{scheme}://{_display_host(self.http_host)}:{self.http_port}"

    @property
    def hls_parts(self) -> bool:
        """LL-HLS is in effect: on, with CMAF segments (MPEG-TS stays plain HLS)."""
        return self.hls_low_latency and self.hls_segment_format == "cmaf"

    @property
    def http_tls(self) -> bool:
        return self.http_tls_cert is not None

    def whip_url(self) -> str | None:
        """OBS's WHIP Server field, when WHIP is on."""
        return f"{self.http_base_url()}/whip" if self.whip_max_publishers > 0 else None

    def whep_base_url(self) -> str | None:
        """Where WebRTC playback is offered (``/whep/{live}``), when it is on."""
        return f"{self.http_base_url()}/whep" if self.whep_max_viewers > 0 else None

    def hls_base_url(self) -> str:
        """Where players find ``hls/...`` objects: the CDN (with the bucket prefix when the
        CDN's origin is the bucket), else streamd's own /hls route."""
        if self.cdn_base_url is None:
            return self.http_base_url()
        if self.storage == "s3" and self.s3_prefix:
            return f"{self.cdn_base_url}/{self.s3_prefix}"
        return self.cdn_base_url

    def mail_from(self) -> str:
        """The From address of the mail streamd sends."""
        if self.smtp_from:
            return self.smtp_from
        host = urlsplit(self.public_url).hostname if self.public_url else None
        return f"streamd <noreply@{host or 'localhost'}>"

    def rtmp_base_url(self) -> str:
        host = urlsplit(self.public_url).hostname if self.public_url else None
        return f"rtmp://{host or _display_host(self.rtmp_host)}:{self.rtmp_port}"


def _display_host(bind: str) -> str:
    return "localhost" if bind in ("0.0.0.0", "::", "") else bind  # noqa: S104


@dataclass(frozen=True, slots=True)
class _Spec:
    field: str
    env: str
    parse: Callable[[str], Any]
    help: str


SPECS: tuple[_Spec, ...] = (
    _Spec("database_url", "DATABASE_URL", p.postgres_url,
          "PostgreSQL URL; unset = embedded PostgreSQL under the data dir"),
    _Spec("database_replica_url", "DATABASE_REPLICA_URL", p.postgres_url,
          "optional read replica for read-heavy queries; unset = primary"),
    _Spec("db_pool_min", "STREAMD_DB_POOL_MIN", p.int_range(0, 1000), "minimum pool connections"),
    _Spec("db_pool_max", "STREAMD_DB_POOL_MAX", p.int_range(1, 1000), "maximum pool connections"),
    _Spec("http_host", "STREAMD_HTTP_HOST", p.host, "HTTP bind address"),
    _Spec("http_port", "STREAMD_HTTP_PORT", p.int_range(1, 65535), "HTTP port"),
    _Spec("rtmp_host", "STREAMD_RTMP_HOST", p.host, "RTMP bind address"),
    _Spec("rtmp_port", "STREAMD_RTMP_PORT", p.int_range(1, 65535), "RTMP port"),
    _Spec("rtmp_app", "STREAMD_RTMP_APP", p.app_name,
          "RTMP application name: OBS Server is rtmp://HOST:PORT/APP"),
    _Spec("rtmps_port", "STREAMD_RTMPS_PORT", p.int_range(1, 65535),
          "RTMPS port (needs STREAMD_RTMPS_CERT and STREAMD_RTMPS_KEY)"),
    _Spec("rtmps_cert", "STREAMD_RTMPS_CERT", p.file, "PEM certificate chain for RTMPS"),
    _Spec("rtmps_key", "STREAMD_RTMPS_KEY", p.file, "PEM private key for RTMPS"),
    _Spec("http_tls_cert", "STREAMD_HTTP_TLS_CERT", p.file,
          "PEM certificate chain: the HTTP listener serves HTTPS (LL-HLS on Apple devices)"),
    _Spec("http_tls_key", "STREAMD_HTTP_TLS_KEY", p.file, "PEM private key of the HTTPS listener"),
    _Spec("rtmp_max_connections", "STREAMD_RTMP_MAX_CONNECTIONS", p.int_range(1, 100_000),
          "RTMP connections accepted at once; more are closed at once"),
    _Spec("rtmp_handshake_timeout", "STREAMD_RTMP_HANDSHAKE_TIMEOUT", p.positive_float,
          "seconds a client has to complete the handshake and publish"),
    _Spec("rtmp_idle_timeout", "STREAMD_RTMP_IDLE_TIMEOUT", p.positive_float,
          "seconds without any byte from a publisher before it is dropped"),
    _Spec("whip_max_publishers", "STREAMD_WHIP_MAX_PUBLISHERS", p.int_range(0, 10_000),
          "WHIP (WebRTC) publishers taken at once by this process; 0 turns WHIP off"),
    _Spec("whip_ice_servers", "STREAMD_WHIP_ICE_SERVERS", p.ice_urls,
          "STUN/TURN URLs for WHIP, comma-separated: used by streamd and sent to publishers"),
    _Spec("whep_max_viewers", "STREAMD_WHEP_MAX_VIEWERS", p.int_range(0, 100_000),
          "WebRTC (WHEP) viewers served at once by this process; 0 turns WHEP playback off"),
    _Spec("whip_turn_username", "STREAMD_WHIP_TURN_USERNAME", p.text,
          "username for the turn: URLs of STREAMD_WHIP_ICE_SERVERS"),
    _Spec("whip_turn_credential", "STREAMD_WHIP_TURN_CREDENTIAL", p.text,
          "password for the turn: URLs of STREAMD_WHIP_ICE_SERVERS"),
    _Spec("data_dir", "STREAMD_DATA_DIR", p.directory, "data directory (database, media, secrets)"),
    _Spec("public_url", "STREAMD_PUBLIC_URL", p.http_url,
          "public base URL of the web app, used in printed and returned URLs"),
    _Spec("jwt_secret", "STREAMD_JWT_SECRET", p.secret,
          "HS256 signing secret; unset = generated once into DATA_DIR/jwt_secret"),
    _Spec("log_level", "STREAMD_LOG_LEVEL", p.choice("debug", "info", "warning", "error"),
          "log level"),
    _Spec("log_format", "STREAMD_LOG_FORMAT", p.choice("text", "json"), "log line format"),
    _Spec("cache_cleanup_interval", "STREAMD_CACHE_CLEANUP_INTERVAL", p.positive_float,
          "seconds between deletions of expired cache rows"),
    _Spec("jwt_algorithm", "STREAMD_JWT_ALGORITHM",
          p.choice("HS256", "RS256", "EdDSA", case_sensitive=True),
          "access-token signature: HS256 (shared secret) or RS256/EdDSA (private key file)"),
    _Spec("jwt_private_key", "STREAMD_JWT_PRIVATE_KEY", p.file,
          "PEM private key signing access tokens (RS256: RSA, EdDSA: Ed25519)"),
    _Spec("jwt_key_id", "STREAMD_JWT_KEY_ID", p.key_id,
          "kid of the signing key; unset = derived from the key"),
    _Spec("jwt_previous_keys", "STREAMD_JWT_PREVIOUS_KEYS", p.previous_keys,
          "KID=PUBLIC_KEY_FILE,... of retired keys whose tokens are still accepted"),
    _Spec("access_token_ttl", "STREAMD_ACCESS_TOKEN_TTL", p.positive_float,
          "seconds an access token is valid"),
    _Spec("refresh_token_ttl", "STREAMD_REFRESH_TOKEN_TTL", p.positive_float,
          "seconds a login session lasts without being refreshed"),
    _Spec("login_max_failures", "STREAMD_LOGIN_MAX_FAILURES", p.int_range(1, 10_000),
          "failed logins per account in a window before 429"),
    _Spec("login_max_failures_per_ip", "STREAMD_LOGIN_MAX_FAILURES_PER_IP",
          p.int_range(1, 1_000_000), "failed logins per client address in a window before 429"),
    _Spec("login_window", "STREAMD_LOGIN_WINDOW", p.positive_float,
          "seconds of the login-failure window"),
    _Spec("register_max_per_ip", "STREAMD_REGISTER_MAX_PER_IP", p.int_range(1, 1_000_000),
          "registration attempts per client address in a window before 429"),
    _Spec("register_max_per_email", "STREAMD_REGISTER_MAX_PER_EMAIL", p.int_range(1, 10_000),
          "registration attempts naming one email address in a window before 429"),
    _Spec("register_window", "STREAMD_REGISTER_WINDOW", p.positive_float,
          "seconds of the registration window (also: at most one 'address taken' mail each)"),
    _Spec("refresh_reuse_grace", "STREAMD_REFRESH_REUSE_GRACE", p.float_range(0, 60),
          "seconds a used refresh token still returns the same new pair (retries); 0 = none"),
    _Spec("smtp_host", "STREAMD_SMTP_HOST", p.host,
          "SMTP server for mail; unset = mail waits in the email_outbox table (streamd mail show)"),
    _Spec("smtp_port", "STREAMD_SMTP_PORT", p.int_range(1, 65535), "SMTP port"),
    _Spec("smtp_security", "STREAMD_SMTP_SECURITY", p.choice("starttls", "tls", "none"),
          "SMTP transport security"),
    _Spec("smtp_username", "STREAMD_SMTP_USERNAME", p.text, "SMTP login (with the password)"),
    _Spec("smtp_password", "STREAMD_SMTP_PASSWORD", p.text, "SMTP password"),
    _Spec("smtp_from", "STREAMD_SMTP_FROM", p.smtp_address,
          "From address; unset = streamd <noreply@PUBLIC_URL host>"),
    _Spec("cors_origins", "STREAMD_CORS_ORIGINS", p.origins,
          "origins allowed to call the API from a browser; unset = none"),
    _Spec("api_cache_ttl", "STREAMD_API_CACHE_TTL", p.positive_float,
          "seconds public live listings may be served from the cache"),
    _Spec("hls_target_duration", "STREAMD_HLS_TARGET_DURATION", p.float_range(0.5, 30),
          "HLS segment duration aimed at (segments are cut on source keyframes)"),
    _Spec("hls_window", "STREAMD_HLS_WINDOW", p.int_range(3, 100),
          "segments listed in a live media playlist"),
    _Spec("hls_segment_format", "STREAMD_HLS_SEGMENT_FORMAT", p.choice("cmaf", "ts"),
          "cmaf (fragmented MP4) or ts (MPEG-TS)"),
    _Spec("hls_low_latency", "STREAMD_HLS_LOW_LATENCY", p.boolean,
          "LL-HLS live playlists (parts, blocking reload); cmaf only; off = plain HLS"),
    _Spec("hls_part_target", "STREAMD_HLS_PART_TARGET", p.float_range(0.1, 1.0),
          "LL-HLS part duration in seconds (rounded to whole frames)"),
    _Spec("hls_recording", "STREAMD_HLS_RECORDING", p.boolean,
          "keep every segment and publish a VOD when a live ends"),
    _Spec("hls_reconnect_window", "STREAMD_HLS_RECONNECT_WINDOW", p.float_range(0, 3600),
          "seconds a live waits for its publisher to come back before it ends"),
    _Spec("hls_thumbnail_interval", "STREAMD_HLS_THUMBNAIL_INTERVAL", p.float_range(1, 3600),
          "seconds between poster (poster.jpg) refreshes"),
    _Spec("hls_ladder", "STREAMD_HLS_LADDER", p.ladder(DEFAULT_LADDER),
          "transcoded rungs NAME:WxH@FPS:KBPSk,...; 'none' for passthrough only"),
    _Spec("chat_rate_limit", "STREAMD_CHAT_RATE_LIMIT", p.int_range(1, 1000),
          "chat messages one user may post per STREAMD_CHAT_RATE_WINDOW"),
    _Spec("chat_rate_window", "STREAMD_CHAT_RATE_WINDOW", p.float_range(1, 3600),
          "seconds of the chat rate-limit window"),
    _Spec("chat_slow_mode_default", "STREAMD_CHAT_SLOW_MODE_DEFAULT", p.int_range(1, 3600),
          "seconds between messages when a moderator turns slow mode on without a value"),
    _Spec("chat_report_interval", "STREAMD_CHAT_REPORT_INTERVAL", p.float_range(0.2, 300),
          "seconds between viewer-count reports (a process's viewers vanish after two)"),
    _Spec("chat_heartbeat_interval", "STREAMD_CHAT_HEARTBEAT_INTERVAL", p.float_range(1, 300),
          "seconds between HLS player heartbeats (a player counts for two)"),
    _Spec("chat_send_queue", "STREAMD_CHAT_SEND_QUEUE", p.int_range(1, 100_000),
          "events queued for one chat client before it is disconnected as too slow"),
    _Spec("chat_ticket_ttl", "STREAMD_CHAT_TICKET_TTL", p.float_range(1, 3600),
          "seconds a chat connection ticket stays valid (it is single-use)"),
    _Spec("hls_x264_preset", "STREAMD_HLS_X264_PRESET",
          p.choice("ultrafast", "superfast", "veryfast", "faster", "fast", "medium"),
          "libx264 preset of the ladder"),
    _Spec("hls_ladder_shedding", "STREAMD_HLS_LADDER_SHEDDING", p.boolean,
          "stop the costliest rungs while the machine cannot transcode in real time"),
    _Spec("hls_ladder_backlog", "STREAMD_HLS_LADDER_BACKLOG", p.float_range(1, 60),
          "seconds of source video that may wait for the ladder before packets are dropped"),
    _Spec("hls_recovery_interval", "STREAMD_HLS_RECOVERY_INTERVAL", p.float_range(0, 86400),
          "seconds between passes finalising recordings a dead process left; 0 = at start only"),
    _Spec("health_interval", "STREAMD_HEALTH_INTERVAL", p.float_range(1, 60),
          "seconds between stream-health samples of each live on air (the studio's graphs)"),
    _Spec("storage", "STREAMD_STORAGE", p.choice("local", "s3"),
          "where segments and playlists go: local (DATA_DIR/media, served at /hls) or s3"),
    _Spec("s3_bucket", "STREAMD_S3_BUCKET", p.bucket, "S3 bucket (STREAMD_STORAGE=s3)"),
    _Spec("s3_prefix", "STREAMD_S3_PREFIX", p.s3_prefix,
          "key prefix inside the bucket; unset = the bucket's root"),
    _Spec("s3_region", "STREAMD_S3_REGION", p.region,
          "bucket region; unset = the AWS chain's (AWS_REGION, ~/.aws/config)"),
    _Spec("s3_endpoint_url", "STREAMD_S3_ENDPOINT_URL", p.http_url,
          "S3-compatible endpoint (MinIO, R2); unset = AWS. Credentials: the AWS chain only"),
    _Spec("cdn_base_url", "STREAMD_CDN_BASE_URL", p.cdn_url,
          "CDN (CloudFront) URL whose origin is the bucket (or streamd); playback URLs use it"),
    _Spec("cdn_key_pair_id", "STREAMD_CDN_KEY_PAIR_ID", p.key_pair_id,
          "CloudFront public key id for signed URLs/cookies (with STREAMD_CDN_PRIVATE_KEY)"),
    _Spec("cdn_private_key", "STREAMD_CDN_PRIVATE_KEY", p.file,
          "PEM RSA private key of that CloudFront key pair"),
    _Spec("cdn_signed_url_ttl", "STREAMD_CDN_SIGNED_URL_TTL", p.float_range(1, 7 * 86400),
          "seconds a signed CloudFront URL or cookie stays valid"),
    _Spec("trusted_proxies", "STREAMD_TRUSTED_PROXIES", p.proxies,
          "proxies (IPs or networks, or *) whose X-Forwarded-For is believed; unset = none"),
    _Spec("chat_viewers_per_address", "STREAMD_CHAT_VIEWERS_PER_ADDRESS", p.int_range(1, 100_000),
          "HLS players and anonymous chat sockets counted per address (IPv6: /64) and live"),
    _Spec("ui_dir", "STREAMD_UI_DIR", p.directory,
          "the web app's build (index.html, assets/) served at /; unset = web/ui/dist"),
    _Spec("upload_max_size", "STREAMD_UPLOAD_MAX_SIZE", p.int_range(1, 5 << 40),
          "largest video file accepted for upload, in bytes (default 20 GiB)"),
    _Spec("upload_part_size", "STREAMD_UPLOAD_PART_SIZE", p.int_range(5 << 20, 5 << 30),
          "bytes per upload part (S3's minimum is 5 MiB; at most 10,000 parts a file)"),
    _Spec("upload_quota", "STREAMD_UPLOAD_QUOTA", p.int_range(1, 1 << 50),
          "bytes of uploaded originals one user may keep, unfinished uploads included"),
    _Spec("upload_max_concurrent", "STREAMD_UPLOAD_MAX_CONCURRENT", p.int_range(1, 100),
          "unfinished uploads one user may have at once"),
    _Spec("upload_expiry", "STREAMD_UPLOAD_EXPIRY", p.float_range(60, 30 * 86400),
          "seconds an unfinished upload is kept before its parts are deleted"),
    _Spec("upload_part_url_ttl", "STREAMD_UPLOAD_PART_URL_TTL", p.float_range(60, 7 * 86400),
          "seconds a signed part URL stays valid (a resumed upload gets fresh ones)"),
    _Spec("vod_workers", "STREAMD_VOD_WORKERS", p.int_range(0, 64),
          "VOD transcoding jobs `streamd serve` runs at once in-process; 0 = none (use "
          "`streamd worker` elsewhere)"),
    _Spec("vod_backend", "STREAMD_VOD_BACKEND", p.choice("local", "mediaconvert"),
          "who transcodes uploads: local (PyAV in the worker) or mediaconvert (AWS)"),
    _Spec("vod_ladder", "STREAMD_VOD_LADDER", p.ladder(DEFAULT_VOD_LADDER),
          "VOD rungs NAME:WxH@FPS:KBPSk,... (rungs above the source are skipped)"),
    _Spec("vod_x264_preset", "STREAMD_VOD_X264_PRESET",
          p.choice("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"),
          "libx264 preset of VOD transcoding"),
    _Spec("vod_max_duration", "STREAMD_VOD_MAX_DURATION", p.float_range(1, 7 * 86400),
          "longest upload accepted, in seconds"),
    _Spec("vod_max_width", "STREAMD_VOD_MAX_WIDTH", p.int_range(16, 16384),
          "widest upload accepted, in pixels"),
    _Spec("vod_max_height", "STREAMD_VOD_MAX_HEIGHT", p.int_range(16, 16384),
          "tallest upload accepted, in pixels"),
    _Spec("vod_max_fps", "STREAMD_VOD_MAX_FPS", p.float_range(1, 1000),
          "highest upload frame rate accepted"),
    _Spec("vod_job_attempts", "STREAMD_VOD_JOB_ATTEMPTS", p.int_range(1, 100),
          "attempts of a transcoding job before its video is marked failed"),
    _Spec("vod_job_lease", "STREAMD_VOD_JOB_LEASE", p.float_range(5, 3600),
          "seconds without a heartbeat after which another worker takes a job over"),
    _Spec("view_window", "STREAMD_VIEW_WINDOW", p.float_range(1, 30 * 86400),
          "seconds before the same viewer's view of a video counts again"),
    _Spec("mediaconvert_role_arn", "STREAMD_MEDIACONVERT_ROLE_ARN", p.text,
          "IAM role MediaConvert assumes to read and write the bucket (vod_backend=mediaconvert)"),
    _Spec("mediaconvert_endpoint_url", "STREAMD_MEDIACONVERT_ENDPOINT_URL", p.http_url,
          "account MediaConvert endpoint; unset = discovered with DescribeEndpoints"),
    _Spec("mediaconvert_queue_arn", "STREAMD_MEDIACONVERT_QUEUE_ARN", p.text,
          "MediaConvert queue; unset = the account's Default queue"),
    _Spec("mode", "STREAMD_MODE", p.choice("development", "production"),
          "production refuses development conveniences (the sandbox payment provider)"),
    _Spec("payments_providers", "STREAMD_PAYMENTS_PROVIDERS", p.providers,
          "payment providers buyers may choose: sandbox, stripe, ecpay (comma-separated)"),
    _Spec("payments_fee_bps", "STREAMD_PAYMENTS_FEE_BPS", p.int_range(0, 10_000),
          "the platform's fee on every sale, in basis points (1000 = 10 %)"),
    _Spec("payments_order_ttl", "STREAMD_PAYMENTS_ORDER_TTL", p.float_range(1800, 86400),
          "seconds an unpaid order stays payable (Stripe's checkout needs 30 min to 24 h)"),
    _Spec("payments_refund_window", "STREAMD_PAYMENTS_REFUND_WINDOW",
          p.float_range(0, 365 * 86400),
          "seconds after payment during which a creator may refund their own sales"),
    _Spec("payments_tip_minimum", "STREAMD_PAYMENTS_TIP_MINIMUM", p.minimum_amounts,
          "smallest tip per currency in minor units, e.g. USD:100,TWD:3000"),
    _Spec("payments_reconcile_interval", "STREAMD_PAYMENTS_RECONCILE_INTERVAL",
          p.float_range(1, 86400),
          "seconds between asks to providers about orders whose webhook has not come"),
    _Spec("stripe_secret_key", "STRIPE_SECRET_KEY", p.text, "Stripe API secret key (sk_...)"),
    _Spec("stripe_webhook_secret", "STRIPE_WEBHOOK_SECRET", p.text,
          "signing secret of the Stripe webhook endpoint (whsec_...)"),
    _Spec("stripe_api_base", "STREAMD_STRIPE_API_BASE", p.http_url,
          "Stripe API base URL; unset = https://api.stripe.com (tests point it at a fake)"),
    _Spec("ecpay_merchant_id", "ECPAY_MERCHANT_ID", p.text, "ECPay merchant id (MerchantID)"),
    _Spec("ecpay_hash_key", "ECPAY_HASH_KEY", p.text, "ECPay HashKey"),
    _Spec("ecpay_hash_iv", "ECPAY_HASH_IV", p.text, "ECPay HashIV"),
    _Spec("ecpay_api_base", "STREAMD_ECPAY_API_BASE", p.http_url,
          "ECPay base URL; unset = the stage environment payment-stage.ecpay.com.tw"),
)  # fmt: skip


def _toml_key(spec: _Spec) -> str:
    return spec.env.removeprefix("STREAMD_").lower()


def load_settings(
    env: Mapping[str, str] | None = None, config_file: Path | None = None
) -> Settings:
    """Build settings from a TOML file (optional) overlaid by the environment."""
    environ = os.environ if env is None else env
    file_values = _read_toml(config_file) if config_file is not None else {}
    known = {_toml_key(s) for s in SPECS}
    for key in file_values:
        if key not in known:
            allowed = ", ".join(sorted(known))
            raise ConfigError(f"{config_file}: unknown setting {key!r}; known settings: {allowed}")

    values: dict[str, Any] = {}
    for spec in SPECS:
        raw: str | None = environ.get(spec.env)
        source = spec.env
        if raw is None and _toml_key(spec) in file_values:
            raw = _toml_scalar(file_values[_toml_key(spec)])
            source = f"{config_file}: {_toml_key(spec)}"
        if raw is None or (raw == "" and spec.env.startswith("DATABASE")):
            continue  # unset (an empty DATABASE_URL means "use the embedded database")
        try:
            values[spec.field] = spec.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}={raw!r} is invalid: expected {exc}") from None

    settings = Settings(**values)
    if settings.db_pool_min > settings.db_pool_max:
        raise ConfigError(
            f"STREAMD_DB_POOL_MIN={settings.db_pool_min} is invalid: "
            f"expected at most STREAMD_DB_POOL_MAX ({settings.db_pool_max})"
        )
    if (settings.rtmps_port is not None) != (
        settings.rtmps_cert is not None and settings.rtmps_key is not None
    ):
        raise ConfigError(
            f"STREAMD_RTMPS_PORT={settings.rtmps_port} is invalid: expected it together with "
            "both STREAMD_RTMPS_CERT and STREAMD_RTMPS_KEY (or none of the three)"
        )
    if (settings.http_tls_cert is None) != (settings.http_tls_key is None):
        raise ConfigError(
            "STREAMD_HTTP_TLS_CERT and STREAMD_HTTP_TLS_KEY are invalid: expected both (HTTPS) "
            "or neither (HTTP)"
        )
    if settings.http_port == settings.rtmp_port and settings.http_host == settings.rtmp_host:
        raise ConfigError(
            f"STREAMD_RTMP_PORT={settings.rtmp_port} is invalid: "
            "expected a port different from STREAMD_HTTP_PORT"
        )
    _check_jwt(settings)
    _check_storage(settings)
    _check_vod(settings)
    _check_whip(settings)
    _check_payments(settings)
    if (settings.smtp_username is None) != (settings.smtp_password is None):
        raise ConfigError(
            "STREAMD_SMTP_USERNAME is invalid: expected it together with STREAMD_SMTP_PASSWORD "
            "(or neither)"
        )
    return settings


def _check_jwt(settings: Settings) -> None:
    asymmetric = settings.jwt_algorithm != "HS256"
    if asymmetric and settings.jwt_private_key is None:
        raise ConfigError(
            f"STREAMD_JWT_ALGORITHM={settings.jwt_algorithm} is invalid: expected "
            "STREAMD_JWT_PRIVATE_KEY to name its private key file"
        )
    if not asymmetric and (settings.jwt_private_key or settings.jwt_previous_keys):
        raise ConfigError(
            "STREAMD_JWT_ALGORITHM=HS256 is invalid: expected RS256 or EdDSA when "
            "STREAMD_JWT_PRIVATE_KEY or STREAMD_JWT_PREVIOUS_KEYS is set"
        )
    if settings.jwt_key_id and settings.jwt_key_id in dict(settings.jwt_previous_keys):
        raise ConfigError(
            f"STREAMD_JWT_PREVIOUS_KEYS is invalid: kid {settings.jwt_key_id!r} is the current "
            "STREAMD_JWT_KEY_ID; give each key its own kid"
        )


def _check_storage(settings: Settings) -> None:
    s3_only = [spec.env for spec in SPECS if spec.field.startswith("s3_")
               and getattr(settings, spec.field) not in (None, "")]  # fmt: skip
    if settings.storage == "s3" and settings.s3_bucket is None:
        raise ConfigError("STREAMD_STORAGE=s3 is invalid: expected STREAMD_S3_BUCKET as well")
    if settings.storage == "local" and s3_only:
        raise ConfigError(
            f"{s3_only[0]} is invalid: expected STREAMD_STORAGE=s3 with it (storage is local)"
        )
    if (settings.cdn_key_pair_id is None) != (settings.cdn_private_key is None):
        raise ConfigError(
            "STREAMD_CDN_KEY_PAIR_ID is invalid: expected it together with "
            "STREAMD_CDN_PRIVATE_KEY (or neither)"
        )
    if settings.cdn_private_key is not None:
        if settings.cdn_base_url is None:
            raise ConfigError(
                "STREAMD_CDN_PRIVATE_KEY is invalid: expected STREAMD_CDN_BASE_URL (signed URLs "
                "are CDN URLs)"
            )
        try:
            key = load_pem_private_key(settings.cdn_private_key.read_bytes(), password=None)
        except (OSError, ValueError, TypeError):
            key = None
        if not isinstance(key, RSAPrivateKey):
            raise ConfigError(
                f"STREAMD_CDN_PRIVATE_KEY={str(settings.cdn_private_key)!r} is invalid: "
                "expected an unencrypted PEM RSA private key (CloudFront signs with RSA-SHA1)"
            )


def _check_vod(settings: Settings) -> None:
    if settings.upload_part_size * 10_000 < settings.upload_max_size:
        raise ConfigError(
            f"STREAMD_UPLOAD_PART_SIZE={settings.upload_part_size} is invalid: expected at least "
            f"{-(-settings.upload_max_size // 10_000)} (a file of STREAMD_UPLOAD_MAX_SIZE in "
            "at most 10,000 parts, S3's limit)"
        )
    if settings.vod_backend == "mediaconvert":
        if settings.storage != "s3":
            raise ConfigError(
                "STREAMD_VOD_BACKEND=mediaconvert is invalid: expected STREAMD_STORAGE=s3 "
                "(MediaConvert reads and writes the bucket)"
            )
        if settings.mediaconvert_role_arn is None:
            raise ConfigError(
                "STREAMD_VOD_BACKEND=mediaconvert is invalid: expected "
                "STREAMD_MEDIACONVERT_ROLE_ARN as well"
            )


def _check_whip(settings: Settings) -> None:
    turn = [url for url in settings.whip_ice_servers if url.startswith("turn")]
    if turn and (settings.whip_turn_username is None or settings.whip_turn_credential is None):
        raise ConfigError(
            f"STREAMD_WHIP_ICE_SERVERS={','.join(turn)} is invalid: expected "
            "STREAMD_WHIP_TURN_USERNAME and STREAMD_WHIP_TURN_CREDENTIAL as well"
        )


def _check_payments(settings: Settings) -> None:
    chosen = settings.payments_providers
    if settings.mode == "production" and "sandbox" in chosen:
        raise ConfigError(
            "STREAMD_PAYMENTS_PROVIDERS=sandbox is invalid with STREAMD_MODE=production: the "
            "sandbox takes no money (choose stripe and/or ecpay, or leave payments empty)"
        )
    needs = {
        "stripe": ("stripe_secret_key", "stripe_webhook_secret"),
        "ecpay": ("ecpay_merchant_id", "ecpay_hash_key", "ecpay_hash_iv"),
    }
    real = [p for p in chosen if p != "sandbox"]
    if real and settings.public_url is None:
        # Where buyers come back and notifications go must not come from a Host header.
        raise ConfigError(
            f"STREAMD_PAYMENTS_PROVIDERS={','.join(chosen)} is invalid: expected "
            "STREAMD_PUBLIC_URL as well (providers send buyers and notifications there)"
        )
    for provider, wanted in needs.items():
        missing = [s.env for s in SPECS if s.field in wanted and getattr(settings, s.field) is None]
        if provider in chosen and missing:
            raise ConfigError(
                f"STREAMD_PAYMENTS_PROVIDERS={provider} is invalid: expected "
                + " and ".join(missing)
                + " as well"
            )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML: {exc}") from None


def _toml_scalar(value: object) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)  # list settings (cors_origins) read TOML arrays of strings
    if isinstance(value, bool | dict | list):
        # bool is an int subclass; neither it nor tables map onto any setting
        return repr(value)
    return str(value)


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, help) for every setting, for docs and ``streamd check``."""
    defaults = {f.name: f.default for f in fields(Settings)}
    return [(s.env, "" if defaults[s.field] is None else str(defaults[s.field]), s.help)
            for s in SPECS]  # fmt: skip


def as_dict(settings: Settings) -> dict[str, object]:
    """Settings safe to print: secrets and passwords masked."""
    out: dict[str, object] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name in SECRET_FIELDS and value is not None:
            value = "***"
        elif f.name.endswith("_url") and isinstance(value, str):
            value = _mask_password(value)
        out[f.name] = str(value) if isinstance(value, Path) else value
    return out


def _mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
