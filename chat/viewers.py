"""Viewer counts: HLS players' heartbeats held by this process, and the totals across processes.

Every process reports its viewers per live (WebSocket clients + players whose heartbeat is
recent) into ``chat_viewer_reports`` every interval; a report older than two intervals no longer
counts, so the viewers of a process that stopped reporting vanish within two intervals.

A heartbeat is anonymous, so two rules keep it from making up viewers: player ids are issued
by the server (:class:`PlayerIds`: a client cannot mint them, only ask for one per request),
and the players counted per client address and live are bounded (:class:`Heartbeats`). Chat
sockets count by who holds them (:func:`socket_viewers`): a signed-in user once however many
sockets it opens, anonymous sockets with the same per-address bound as players.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import ipaddress
import secrets
from collections import Counter
from collections.abc import Iterable

MAX_PLAYERS = 200_000  # heartbeating players tracked by one process, all lives together
PLAYER_ID_LENGTH = 32  # 16 characters of nonce, 16 of signature


class Beat(enum.Enum):
    ISSUED = "issued"  # no valid id: one was issued, counted from the next heartbeat
    COUNTED = "counted"
    LIMITED = "limited"  # the address already has as many players counted as it may
    FULL = "full"  # the process tracks as many players as it may


class PlayerIds:
    """Ids of the form NONCE + HMAC(key, live id, NONCE), both URL-safe base64.

    Every process of a deployment derives the same key, so an id issued by one is accepted
    by the others; an id is good for its live only."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, live_id: int) -> str:
        nonce = secrets.token_urlsafe(12)  # 16 characters
        return nonce + self._signature(live_id, nonce)

    def valid(self, live_id: int, player_id: str) -> bool:
        if len(player_id) != PLAYER_ID_LENGTH or not player_id.isascii():
            return False
        nonce, signature = player_id[:16], player_id[16:]
        return hmac.compare_digest(signature.encode(), self._signature(live_id, nonce).encode())

    def _signature(self, live_id: int, nonce: str) -> str:
        mac = hmac.new(self._key, f"{live_id}:{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:12]).decode()  # 96 bits, 16 characters


def socket_viewers(keys: Iterable[str], per_address: int) -> int:
    """Viewers among a room's chat sockets, given each socket's :func:`viewer_key`."""
    seen = Counter(keys)
    return sum(min(n, per_address) if key.startswith("addr:") else 1 for key, n in seen.items())


def viewer_key(user_id: int | None, host: str) -> str:
    """Who a chat socket counts as: its user, or (anonymous) its address group."""
    return f"user:{user_id}" if user_id is not None else f"addr:{address_group(host)}"


def address_group(host: str) -> str:
    """What the per-address bound counts on: an IPv4 address as it is, an IPv6 one by its /64
    (a subscriber gets at least a /64, and its devices pick random addresses inside it)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Heartbeats:
    """Players per live and client address, each counted until ``ttl`` after its last beat;
    at most ``per_address`` players per address and live, ``max_players`` in all.

    Time is passed in (monotonic seconds)."""

    def __init__(self, ttl: float, per_address: int, max_players: int = MAX_PLAYERS) -> None:
        self.ttl = ttl
        self.per_address = per_address
        self.max_players = max_players
        self._lives: dict[int, dict[str, dict[str, float]]] = {}  # live -> address -> players
        self._total = 0

    def beat(self, live_id: int, address: str, player_id: str, now: float) -> Beat:
        players = self._lives.get(live_id, {}).get(address)
        if players is not None and player_id in players:
            players[player_id] = now
            return Beat.COUNTED
        if players is not None and len(players) >= self.per_address:
            self._total -= _drop_expired(players, now - self.ttl)  # at most per_address
            if len(players) >= self.per_address:
                return Beat.LIMITED
        if self._total >= self.max_players:
            self.expire(now)
            if self._total >= self.max_players:
                return Beat.FULL
        self._lives.setdefault(live_id, {}).setdefault(address, {})[player_id] = now
        self._total += 1
        return Beat.COUNTED

    def expire(self, now: float) -> None:
        for live_id, addresses in list(self._lives.items()):
            for address, players in list(addresses.items()):
                self._total -= _drop_expired(players, now - self.ttl)
                if not players:
                    del addresses[address]
            if not addresses:
                del self._lives[live_id]

    def counts(self, now: float) -> dict[int, int]:
        self.expire(now)
        return {live_id: sum(map(len, addresses.values()))
                for live_id, addresses in self._lives.items()}  # fmt: skip

    def __len__(self) -> int:
        return self._total


def _drop_expired(players: dict[str, float], before: float) -> int:
    expired = [p for p, seen in players.items() if seen <= before]
    for player_id in expired:
        del players[player_id]
    return len(expired)
