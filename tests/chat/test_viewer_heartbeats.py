"""HLS player heartbeats cannot make up viewers.

Player ids are issued by the server (signed, per live) and the players counted per client
address and live are bounded (STREAMD_CHAT_VIEWERS_PER_ADDRESS). The HTTP tests serve the real
app with the uvicorn config ``streamd serve`` builds, so the client address is the one the
trusted-proxy setting yields.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from chat.hub import Hub
from chat.viewers import Beat, Heartbeats, PlayerIds, address_group, socket_viewers
from config.settings import ConfigError, Settings, load_settings
from db import lives
from tests.app_helpers import served_app
from tests.chat.chat_helpers import ChatServer, make_user
from tests.helpers import free_port

Served = tuple[httpx.AsyncClient, Hub, int, int]


@contextlib.asynccontextmanager
async def serving(database_url: str, **overrides: Any) -> AsyncIterator[Served]:
    """The app under streamd's uvicorn config: (client, the hub, the ids of two lives)."""
    settings = Settings(**{"jwt_secret": "s" * 40, "http_host": "127.0.0.1",
                           "http_port": free_port(), **overrides})  # fmt: skip
    async with served_app(settings, database_url) as (app, base):
        owner = await make_user(app.state.db.primary, app.state.keys, "creator")
        ids = [int((await lives.create(app.state.db.primary, user_id=owner.id, title=t))["id"])
               for t in ("one", "two")]  # fmt: skip
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield client, app.state.chat, ids[0], ids[1]


async def _beat(client: httpx.AsyncClient, live: int, player_id: str | None = None,
                **headers: str) -> dict[str, Any]:  # fmt: skip
    body = {} if player_id is None else {"player_id": player_id}
    r = await client.post(f"/api/lives/{live}/heartbeat", json=body, headers=headers)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def test_random_player_ids_from_one_address_are_not_viewers(database_url: str) -> None:
    async with serving(database_url) as (client, hub, live, _):
        # The attack a review made: 120 made-up ids from one address.
        for _ in range(120):
            await _beat(client, live, secrets.token_urlsafe(12))
        assert hub.local_counts().get(live, 0) == 0
        # Playing along (take an issued id, then beat with it) buys 4 viewers at most.
        for _ in range(120):
            issued = (await _beat(client, live))["player_id"]
            await _beat(client, live, issued)
        assert hub.local_counts() == {live: 4}
        await hub.report_once()
        assert (await _beat(client, live))["viewer_count"] == 4


async def test_a_player_is_counted_from_its_second_heartbeat(database_url: str) -> None:
    async with serving(database_url) as (client, hub, live, other):
        first = await _beat(client, live)
        player_id = first["player_id"]
        assert len(player_id) == 32 and first["interval"] == 15
        assert hub.local_counts().get(live, 0) == 0  # an id asked for is no viewer yet
        assert (await _beat(client, live, player_id))["player_id"] == player_id
        assert (await _beat(client, live, player_id))["player_id"] == player_id
        assert hub.local_counts() == {live: 1}  # the same player, twice
        # A forged, altered or unsigned id is replaced, and not counted.
        tampered = player_id[:-1] + ("A" if player_id[-1] != "A" else "B")
        for bad in (tampered, "player-01", player_id[:16] * 2):
            answer = await _beat(client, live, bad)
            assert answer["player_id"] not in (bad, player_id)
        assert hub.local_counts() == {live: 1}
        # An id is for its live only.
        assert (await _beat(client, other, player_id))["player_id"] != player_id
        assert hub.local_counts() == {live: 1}


async def test_the_bound_is_per_client_address_after_trusted_proxies(database_url: str) -> None:
    async def players_behind(client: httpx.AsyncClient, live: int, n: int, address: str) -> None:
        for _ in range(n):
            issued = (await _beat(client, live, None, **{"X-Forwarded-For": address}))["player_id"]
            await _beat(client, live, issued, **{"X-Forwarded-For": address})

    # No trusted proxy: a client cannot spread itself over made-up addresses.
    async with serving(database_url, chat_viewers_per_address=2) as (client, hub, live, _):
        for i in range(5):
            await players_behind(client, live, 3, f"198.51.100.{i}")
        assert hub.local_counts() == {live: 2}
    # Behind a trusted proxy each forwarded address has its own bound.
    async with serving(database_url, chat_viewers_per_address=2,
                       trusted_proxies=("127.0.0.1",)) as (client, hub, live, _):  # fmt: skip
        for i in range(5):
            await players_behind(client, live, 3, f"198.51.100.{i}")
        # IPv6 clients are bounded per /64: their privacy addresses are one household.
        for i in range(3):
            await players_behind(client, live, 1, f"2001:db8:1:2::{i + 1}")
        assert hub.local_counts() == {live: 5 * 2 + 2}


# --- sans-IO pieces ---


def test_player_ids_are_signed_per_live_and_key() -> None:
    ids = PlayerIds(b"k" * 32)
    player = ids.issue(7)
    assert len(player) == 32 and player.replace("-", "").replace("_", "").isalnum()
    assert ids.valid(7, player)
    assert not ids.valid(8, player)
    assert not PlayerIds(b"j" * 32).valid(7, player)  # another deployment's key
    assert not ids.valid(7, player[:31]) and not ids.valid(7, player + "A")
    assert not ids.valid(7, "é" * 32)
    assert ids.issue(7) != player


def test_heartbeats_are_bounded_per_address_and_expire() -> None:
    beats = Heartbeats(ttl=30, per_address=2, max_players=100)
    assert beats.beat(1, "a", "p1", 0.0) is Beat.COUNTED
    assert beats.beat(1, "a", "p2", 0.0) is Beat.COUNTED
    assert beats.beat(1, "a", "p3", 1.0) is Beat.LIMITED  # that address has its two
    assert beats.beat(1, "a", "p1", 20.0) is Beat.COUNTED  # a known player beats on
    assert beats.beat(1, "b", "p3", 1.0) is Beat.COUNTED  # another address
    assert beats.beat(2, "a", "p3", 1.0) is Beat.COUNTED  # another live
    assert beats.counts(20.0) == {1: 3, 2: 1}
    assert beats.beat(1, "a", "p3", 31.0) is Beat.COUNTED  # p2 expired: room again
    assert beats.counts(31.0) == {1: 2}  # p1 and p3 at "a"; the players seen at 1.0 expired
    assert beats.counts(100.0) == {} and len(beats) == 0


def test_address_groups() -> None:
    assert address_group("203.0.113.9") == "203.0.113.9"
    assert address_group("2001:db8:1:2:aaaa::1") == address_group("2001:db8:1:2::ffff")
    assert address_group("2001:db8:1:2::1") != address_group("2001:db8:1:3::1")
    assert address_group("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_group("unknown") == "unknown"


@pytest.mark.parametrize("value", ["0", "100001", "many"])
def test_the_setting_is_bounded(value: str) -> None:
    with pytest.raises(ConfigError, match="STREAMD_CHAT_VIEWERS_PER_ADDRESS"):
        load_settings({"STREAMD_CHAT_VIEWERS_PER_ADDRESS": value})
    assert load_settings({}).chat_viewers_per_address == 4


async def test_chat_sockets_count_by_who_holds_them(server: ChatServer) -> None:
    """Opening sockets is the other way to make up viewers: anonymous ones from one address
    count up to the per-address bound (4), a signed-in user once however many it opens."""
    owner = await server.make_user("creator")
    viewer = await server.make_user()
    live = int((await lives.create(server.pool, user_id=owner.id, title="t"))["id"])
    chats = [await server.connect(live) for _ in range(12)]  # anonymous, all from 127.0.0.1
    chats += [await server.connect(live, viewer) for _ in range(3)]
    chats.append(await server.connect(live, owner))
    try:
        assert server.hub.clients_of(live) == 16
        assert server.hub.local_counts() == {live: 4 + 1 + 1}
    finally:
        for chat in chats:
            await chat.close()


def test_socket_viewers_bound_addresses_and_count_users_once() -> None:
    keys = ["addr:203.0.113.7"] * 9 + ["addr:2001:db8::/64"] * 2 + ["user:1"] * 5 + ["user:2"]
    assert socket_viewers(keys, per_address=4) == 4 + 2 + 1 + 1
    assert socket_viewers([], per_address=4) == 0
