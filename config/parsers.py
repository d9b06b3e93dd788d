"""Value parsers of the settings: each takes the raw text of one variable and returns the typed
value, or raises ``ValueError`` whose message says what is allowed (``config.settings`` turns
it into the one-line :class:`~config.settings.ConfigError`)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

_N = TypeVar("_N", int, float)
# A ladder rung as configured: (name, width, height, fps, bits per second). config/ stays free
# of the packager's types; packager.options turns these into packager.types.Rung.
RungSpec = tuple[str, int, int, int, int]


def text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("a non-empty string")
    return raw


def postgres_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("postgres", "postgresql") or not (parts.hostname or parts.query):
        raise ValueError("a URL like postgresql://user:password@host:5432/dbname")
    return raw


def http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http:// or https:// URL such as https://live.example.com")
    return raw.rstrip("/")


def _in_range(convert: Callable[[str], _N], lo: _N, hi: _N, allowed: str) -> Callable[[str], _N]:
    def parse(raw: str) -> _N:
        try:
            value = convert(raw.strip())
        except ValueError:
            raise ValueError(allowed) from None
        if not lo <= value <= hi:  # NaN fails this comparison too
            raise ValueError(allowed)
        return value

    return parse


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    return _in_range(int, lo, hi, f"an integer from {lo} to {hi}")


def float_range(lo: float, hi: float) -> Callable[[str], float]:
    return _in_range(float, lo, hi, f"a number from {lo:g} to {hi:g}")


def positive_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("a number of seconds greater than 0") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("a number of seconds greater than 0")
    return value


def host(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() for c in value) or "/" in value:
        raise ValueError("a host name or IP address to bind, such as 0.0.0.0 or 127.0.0.1")
    return value


def directory(raw: str) -> Path:
    if not raw.strip() or "\x00" in raw:
        raise ValueError("a directory path")
    return Path(raw).expanduser()


def app_name(raw: str) -> str:
    value = raw.strip().strip("/")
    if not value or len(value) > 64 or not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError("1-64 letters, digits, '-', '_' or '.', such as live")
    return value


def file(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ValueError("the path of a readable file")
    return path


def secret(raw: str) -> str:
    if len(raw) < 32:
        raise ValueError("a random string of at least 32 characters (leave unset to generate one)")
    return raw


def key_id(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 64 or not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError("1-64 letters, digits, '-', '_' or '.', such as 2026-01")
    return value


def previous_keys(raw: str) -> tuple[tuple[str, Path], ...]:
    """``kid=/path/public.pem,kid2=/path/other.pem``: public keys still accepted for tokens."""
    allowed = "a comma-separated list of KID=PUBLIC_KEY_FILE entries of readable files"
    out: list[tuple[str, Path]] = []
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        kid, sep, path = entry.partition("=")
        if not sep:
            raise ValueError(allowed)
        try:
            out.append((key_id(kid), file(path.strip())))
        except ValueError:
            raise ValueError(allowed) from None
    if len({kid for kid, _ in out}) != len(out):
        raise ValueError(allowed + ", each KID once")
    return tuple(out)


def smtp_address(raw: str) -> str:
    value = raw.strip()
    if not value or "\n" in value or "\r" in value or "@" not in value:
        raise ValueError("an email address, optionally with a name: streamd <noreply@example.com>")
    return value


def origins(raw: str) -> tuple[str, ...]:
    allowed = "* or a comma-separated list of origins such as https://app.example.com"
    out: list[str] = []
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        if entry == "*":
            out.append(entry)
            continue
        parts = urlsplit(entry)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
            raise ValueError(allowed)
        out.append(f"{parts.scheme}://{parts.netloc}")
    if "*" in out and len(out) > 1:
        raise ValueError(allowed)
    return tuple(out)


# What aiortc's parse_stun_turn_uri takes: a host name or IPv4 address (no IPv6 literal), an
# optional port, and ?transport on TURN only (RFC 7064 defines none for STUN).
_ICE_URL = re.compile(
    r"^(stun|stuns):[A-Za-z0-9.\-]+(:[0-9]{1,5})?$"
    r"|^(turn|turns):[A-Za-z0-9.\-]+(:[0-9]{1,5})?(\?transport=(udp|tcp))?$"
)


def ice_urls(raw: str) -> tuple[str, ...]:
    """Comma-separated STUN/TURN URLs (RFC 7064/7065), e.g. ``stun:stun.example.com:3478``."""
    out = tuple(filter(None, (part.strip() for part in raw.split(","))))
    for url in out:
        if not _ICE_URL.match(url):
            raise ValueError(
                "a comma-separated list of stun:HOST[:PORT] or turn:HOST[:PORT][?transport=udp|tcp]"
                " (host name or IPv4 address)"
            )
    return out


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("true or false")


_RUNG = re.compile(r"^([a-z0-9_]{1,32}):(\d{2,4})x(\d{2,4})@(\d{1,3}):(\d{2,6})k$")


def ladder(default: tuple[RungSpec, ...]) -> Callable[[str], tuple[RungSpec, ...]]:
    """``NAME:WxH@FPS:KBPSk,...``; ``none`` (or empty): no rungs; ``default``: ``default``."""

    def parse(raw: str) -> tuple[RungSpec, ...]:
        value = raw.strip().lower()
        if value in ("none", ""):
            return ()
        if value == "default":
            return default
        rungs: list[RungSpec] = []
        for part in value.split(","):
            match = _RUNG.match(part.strip())
            if match is None:
                raise ValueError(
                    "'none', 'default' or rungs like 720p:1280x720@30:3000k,360p:640x360@30:700k"
                )
            name, w, h, fps, kbps = match.groups()
            if int(w) % 2 or int(h) % 2 or not 1 <= int(fps) <= 60:
                raise ValueError("even widths and heights, 1-60 fps, e.g. 720p:1280x720@30:3000k")
            rungs.append((name, int(w), int(h), int(fps), int(kbps) * 1000))
        if len({r[0] for r in rungs}) != len(rungs):
            raise ValueError("rungs with distinct names")
        return tuple(rungs)

    return parse


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_PREFIX_PART = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def bucket(raw: str) -> str:
    value = raw.strip()
    if not _BUCKET.fullmatch(value) or ".." in value:
        raise ValueError("an S3 bucket name: 3-63 lower-case letters, digits, '.' or '-'")
    return value


def s3_prefix(raw: str) -> str:
    value = raw.strip().strip("/")
    parts = value.split("/") if value else []
    if len(parts) > 8 or not all(_S3_PREFIX_PART.fullmatch(p) and p not in (".", "..")
                                 for p in parts):  # fmt: skip
        raise ValueError("a key prefix like streamd or media/live (letters, digits, _.-)")
    return value


def region(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[a-z]{2,}(-[a-z0-9]+){1,4}|auto", value):
        raise ValueError("an AWS region such as eu-west-1 (or auto for R2)")
    return value


def cdn_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(
            "an http(s) URL without a query, such as https://d111111abcdef8.cloudfront.net"
        )
    return raw.strip().rstrip("/")


def key_pair_id(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Z0-9]{8,64}", value):
        raise ValueError("a CloudFront public key (key pair) id such as K2JCJMDEHXQW5F")
    return value


def proxies(raw: str) -> tuple[str, ...]:
    """Addresses or networks whose X-Forwarded-For/-Proto are believed; ``*``: any peer."""
    allowed = "* or a comma-separated list of IP addresses or networks such as 10.0.0.0/8"
    out: list[str] = []
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        if entry != "*":
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(allowed) from None
        out.append(entry)
    if "*" in out and len(out) > 1:
        raise ValueError(allowed)
    return tuple(out)


def choice(*allowed: str, case_sensitive: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip() if case_sensitive else raw.strip().lower()
        if value not in allowed:
            raise ValueError("one of " + ", ".join(allowed))
        return value

    return parse


def providers(raw: str) -> tuple[str, ...]:
    """Payment providers offered to buyers, in the order the checkout page lists them."""
    allowed = ("sandbox", "stripe", "ecpay")
    out = tuple(dict.fromkeys(part.strip().lower() for part in raw.split(",") if part.strip()))
    if any(name not in allowed for name in out):
        raise ValueError("a comma-separated list of " + ", ".join(allowed) + " (or empty: none)")
    return out


def minimum_amounts(raw: str) -> tuple[tuple[str, int], ...]:
    """``USD:100,TWD:3000``: an amount in minor units per ISO currency code."""
    allowed = "a comma-separated list of CURRENCY:MINOR_UNITS, such as USD:100,TWD:3000"
    out: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        code, _, amount = entry.partition(":")
        if len(code) != 3 or not code.isalpha() or not amount.isdigit() or int(amount) < 1:
            raise ValueError(allowed)
        out[code.upper()] = int(amount)
    return tuple(out.items())
