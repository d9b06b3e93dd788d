"""The chat hub of one process: rooms, the LISTEN connection, posting, moderation, viewers.

Every message goes to PostgreSQL first (chat.writer) and reaches clients only through NOTIFY on
one LISTEN connection per process, held outside the pool, so every process, this one included,
delivers exactly what was committed. When that connection drops, the hub reconnects with
backoff, LISTENs again, then reads from ``chat_messages`` what each open room missed; message
ids already delivered are remembered per room, so nothing is delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from chat.client import ChatClient, ChatUser
from chat.events import Action, error_event, message_event, system_event
from chat.room import HISTORY, Room, frame
from chat.rules import RateLimiter, RuleError, clean_text
from chat.types import AsgiSend, FrameWriter, Json
from chat.viewers import (
    Beat,
    Heartbeats,
    PlayerIds,
    address_group,
    socket_viewers,
    viewer_key,
)
from chat.writer import MessageWriter, WriterBusy
from config.secrets import derived_key
from config.settings import Settings
from db import chat as chat_db
from db import live_health, probe
from db.errors import DB_ERRORS

log = logging.getLogger(__name__)

PING_S = 5.0  # how often an idle LISTEN connection is checked
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
CATCH_UP_LIMIT = 5000  # messages read back per room after a reconnect
TICKET_CLEANUP_S = 60.0  # how often expired chat tickets are deleted


@dataclass(frozen=True, slots=True)
class HubConfig:
    rate_limit: int = 5
    rate_window: float = 10.0
    slow_mode_default: int = 30
    report_interval: float = 5.0
    heartbeat_interval: float = 15.0
    send_queue: int = 256
    ticket_ttl: float = 60.0
    viewers_per_address: int = 4
    # Signs player ids; from_settings derives it so that every process accepts the others' ids.
    player_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> HubConfig:
        return cls(
            rate_limit=settings.chat_rate_limit, rate_window=settings.chat_rate_window,
            slow_mode_default=settings.chat_slow_mode_default,
            report_interval=settings.chat_report_interval,
            heartbeat_interval=settings.chat_heartbeat_interval,
            send_queue=settings.chat_send_queue, ticket_ttl=settings.chat_ticket_ttl,
            viewers_per_address=settings.chat_viewers_per_address,
            player_key=player_key(settings),
        )  # fmt: skip


def player_key(settings: Settings) -> bytes:
    """The player-id key (shared by every process of a deployment)."""
    return derived_key(settings, b"streamd player ids")


class Hub:
    def __init__(self, database_url: str, pool: asyncpg.Pool, config: HubConfig) -> None:
        self.config = config
        self.process_id = uuid.uuid4()
        self._url = database_url
        self._pool = pool
        self._rooms: dict[int, Room] = {}
        self._opening: dict[int, asyncio.Future[Room | None]] = {}
        self._limiter = RateLimiter(config.rate_limit, config.rate_window)
        self.heartbeats = Heartbeats(2 * config.heartbeat_interval, config.viewers_per_address)
        self.player_ids = PlayerIds(config.player_key)
        self.totals: dict[int, int] = {}  # viewers per live across processes, last report
        #: More viewers held by this process, per live (WebRTC playback's), reported with ours.
        self.viewer_sources: list[Callable[[], dict[int, int]]] = []
        self.connected = asyncio.Event()  # the LISTEN connection is up and caught up
        self.stats = {"slow_disconnects": 0, "reconnects": 0, "bad_notifications": 0}
        self._writer: MessageWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._channels: dict[str, Callable[[str], object]] = {live_health.CHANNEL: self._on_health}
        self._listen_conn: asyncpg.Connection | None = None
        self._late_listens: set[asyncio.Task[None]] = set()

    def listen(self, channel: str, callback: Callable[[str], object]) -> None:
        """Also hand this channel's NOTIFY payloads to ``callback``: other parts of the process
        share the one LISTEN connection. Before :meth:`start` or after (the web app, built
        once the hub runs, adds its channels then). A payload sent while the connection is
        down is not replayed; ``callback`` must not raise."""
        self._channels[channel] = callback
        conn = self._listen_conn
        if conn is not None and not conn.is_closed():
            task = asyncio.get_running_loop().create_task(self._add_late(conn, channel, callback))
            self._late_listens.add(task)
            task.add_done_callback(self._late_listens.discard)

    async def _add_late(
        self, conn: asyncpg.Connection, channel: str, callback: Callable[[str], object]
    ) -> None:
        try:
            await conn.add_listener(channel, _payload_to(callback))
        except (*DB_ERRORS, asyncpg.InterfaceError) as exc:
            # The next (re)connection LISTENs to every channel anyway.
            log.warning("chat: could not LISTEN to %s yet (%s)", channel, exc)

    async def start(self) -> None:
        self._writer = MessageWriter(self._pool)
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="chat-listen"),
            asyncio.create_task(self._report_forever(), name="chat-viewers"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._writer is not None:
            await self._writer.close()
        for room in self._rooms.values():
            for client in room.clients:
                client.discard()

    # --- joining and leaving ---

    async def join(
        self,
        live_id: int,
        send: AsgiSend,
        user: ChatUser | None,
        on_drop: Callable[[str], None],
        write_frame: FrameWriter | None = None,
        address: str = "",
    ) -> ChatClient:
        """Add a client to a room and send it the welcome. RuleError: no such live, banned.
        ``address``: the client's, which an anonymous client counts by among the viewers."""
        room = await self._room(live_id)
        if room is None:
            raise RuleError("not_found", "no such live")
        # Its last client may have left while this one waited for the room to load.
        room = self._rooms.setdefault(live_id, room)
        if user is not None and (left := room.sanctioned(user.id, "ban", time.time())):
            raise RuleError("banned", f"you are banned from this chat for {left:.0f} s")

        def drop(client: ChatClient, reason: str) -> None:
            self._remove(client)
            if reason == "slow":
                self.stats["slow_disconnects"] += 1
                log.info("chat: live %d: dropped a client that does not keep up", live_id)
            on_drop(reason)

        client = ChatClient(send, live_id=live_id, user=user, max_queue=self.config.send_queue,
                            close=drop, write_frame=write_frame,
                            viewer_key=viewer_key(user.id if user else None, address))  # fmt: skip
        room.clients[client] = None
        client.push(frame({
            "type": "welcome", "live_id": live_id, "messages": list(room.recent),
            "viewer_count": room.viewer_count, "chat_enabled": room.chat_enabled,
            "slow_mode": room.slow.seconds,
            "you": None if user is None else {"id": user.id, "username": user.username},
            "can_moderate": user is not None and room.can_moderate(user.id, user.role),
        }))  # fmt: skip
        return client

    def leave(self, client: ChatClient) -> None:
        client.discard()
        self._remove(client)

    def _remove(self, client: ChatClient) -> None:
        room = self._rooms.get(client.live_id)
        if room is None:
            return
        room.clients.pop(client, None)
        if not room.clients:
            del self._rooms[client.live_id]

    def clients_of(self, live_id: int) -> int:
        room = self._rooms.get(live_id)
        return len(room.clients) if room is not None else 0

    async def _room(self, live_id: int) -> Room | None:
        opening = self._opening.get(live_id)
        room = self._rooms.get(live_id)
        if room is not None and opening is None:  # open and loaded
            return room
        if opening is None:
            opening = asyncio.get_running_loop().create_future()
            self._opening[live_id] = opening
            try:
                opening.set_result(await self._open(live_id))
            except BaseException as exc:
                opening.set_exception(exc)
                opening.exception()  # retrieved here: the waiters below get it too
            finally:
                del self._opening[live_id]
        return await asyncio.shield(opening)

    async def _open(self, live_id: int) -> Room | None:
        settings = await chat_db.room_settings(self._pool, live_id)
        if settings is None:
            return None
        room = Room(live_id)
        # In the map before the history is read: a message NOTIFYed meanwhile is not lost.
        self._rooms[live_id] = room
        try:
            await self._load(room, settings)
        except BaseException:
            if not room.clients:
                self._rooms.pop(live_id, None)
            raise
        return room

    async def _load(self, room: Room, settings: asyncpg.Record | None = None) -> None:
        """(Re)read a room's settings, moderators, sanctions and recent history."""
        if settings is None:
            settings = await chat_db.room_settings(self._pool, room.live_id)
            if settings is None:
                return
        room.owner_id = int(settings["owner_id"])
        room.chat_enabled = bool(settings["chat_enabled"])
        room.slow.set(int(settings["chat_slow_mode_s"]))
        room.viewer_count = int(settings["viewer_count"])
        room.moderators = await chat_db.moderator_ids(self._pool, room.live_id)
        room.sanctions = {
            (int(r["user_id"]), r["kind"]): r["until"].timestamp()
            for r in await chat_db.active_sanctions(self._pool, room.live_id)
        }
        history = await chat_db.recent_messages(self._pool, room.live_id, HISTORY)
        events = {int(e["id"]): e for e in room.recent}
        for row in history:
            room.remember(int(row["id"]))
            events[int(row["id"])] = _message_from_row(row)
        room.recent.clear()
        room.recent.extend(events[k] for k in sorted(events)[-HISTORY:])

    # --- client actions ---

    async def act(self, client: ChatClient, action: Action) -> None:
        """Carry out a client's action; a refusal is an ``error`` event to that client."""
        try:
            await self._act(client, action)
        except RuleError as exc:
            client.push(frame(error_event(exc.code, exc.message, exc.retry_after)))
        except WriterBusy as exc:
            client.push(frame(error_event("busy", str(exc))))
        except DB_ERRORS as exc:
            log.warning("chat: live %d: %s failed: %s", client.live_id, action.type, exc)
            client.push(frame(error_event("unavailable", "chat is unavailable; try again")))

    async def _act(self, client: ChatClient, action: Action) -> None:
        user = client.user
        if user is None:
            raise RuleError("read_only", "sign in (and connect with a ticket) to take part")
        room = self._rooms.get(client.live_id)
        if room is None:
            raise RuleError("not_found", "the room is closed")
        if action.type == "message":
            await self._post(room, user, action.text)
            return
        if not room.can_moderate(user.id, user.role):
            raise RuleError("forbidden", "only the streamer, admins and moderators can do this")
        if action.type == "delete":
            author = await chat_db.message_author(
                self._pool, live_id=room.live_id, message_id=action.target
            )
            if author is None:
                raise RuleError("not_found", "no such message in this chat")
            self._check_reach(room, user, action.type, author)
            done = await chat_db.delete_message(
                self._pool, live_id=room.live_id, message_id=action.target, actor_id=user.id
            )
            if done is None:
                raise RuleError("not_found", "no such message in this chat")
        elif action.type in ("mute", "ban"):
            target = await chat_db.member(self._pool, live_id=room.live_id, user_id=action.target)
            if target is None:
                raise RuleError("not_found", "no such user")
            self._check_reach(room, user, action.type, target)
            assert action.seconds is not None  # parse_action gives one for mute and ban
            if not await chat_db.sanction(
                self._pool, live_id=room.live_id, user_id=action.target, kind=action.type,
                duration_s=action.seconds, actor_id=user.id,
            ):  # fmt: skip
                raise RuleError("not_found", "no such user")
        elif action.type == "slow_mode":
            seconds = self.config.slow_mode_default if action.seconds is None else action.seconds
            await chat_db.set_slow_mode(
                self._pool, live_id=room.live_id, seconds=seconds, actor_id=user.id
            )

    @staticmethod
    def _check_reach(room: Room, user: ChatUser, action: str, target: asyncpg.Record) -> None:
        """RuleError unless ``user`` may ``action`` ``target`` (a chat_db.member or
        message_author row): moderators act on viewers only (Room.may_act)."""
        target_id = target["user_id"]
        if room.may_act(user.id, user.role, action, target_id=target_id, target_role=target["role"],
                        target_is_moderator=target["is_moderator"]):  # fmt: skip
            return
        what = "delete a message of" if action == "delete" else action
        log.info("chat: live %d: user %d may not %s user %s", room.live_id, user.id, what,
                 target_id)  # fmt: skip
        if target_id == user.id:
            raise RuleError("forbidden", "you cannot mute or ban yourself")
        if target_id == room.owner_id and action != "delete":
            raise RuleError("forbidden", "the streamer cannot be muted or banned in its own chat")
        raise RuleError("forbidden", "moderators act on viewers only; the streamer also on "
                        "moderators, admins also on the streamer; nobody on an admin")  # fmt: skip

    async def _post(self, room: Room, user: ChatUser, raw: str) -> None:
        if not room.chat_enabled:
            raise RuleError("chat_disabled", "chat is turned off for this live")
        now = time.time()
        for kind in ("ban", "mute"):
            if (left := room.sanctioned(user.id, kind, now)) is not None:
                raise RuleError(
                    "muted" if kind == "mute" else "banned",
                    f"you cannot post here for {left:.0f} s", retry_after=left,
                )  # fmt: skip
        text = clean_text(raw)
        moderator = room.can_moderate(user.id, user.role)
        mono = time.monotonic()
        if not moderator:
            self._limiter.check(user.id, mono)
            room.slow.check(user.id, mono)
        assert self._writer is not None, "Hub.start() was not called"
        await self._writer.post(room.live_id, user.id, text)

    # --- the LISTEN connection ---

    async def _listen_forever(self) -> None:
        delay = BACKOFF_MIN_S
        while True:
            try:
                conn = await asyncpg.connect(
                    self._url, timeout=10, server_settings={"application_name": "streamd-chat"}
                )
            except DB_ERRORS as exc:
                log.warning("chat: LISTEN connection failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            try:
                await conn.add_listener(chat_db.CHANNEL, self._on_notify)
                for channel, callback in list(self._channels.items()):
                    await conn.add_listener(channel, _payload_to(callback))
                self._listen_conn = conn
                await self._catch_up()
                self.connected.set()
                delay = BACKOFF_MIN_S
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), PING_S)
                    except TimeoutError:
                        await probe.ping_connection(conn, PING_S)
                log.warning("chat: LISTEN connection lost; reconnecting")
            except DB_ERRORS as exc:
                log.warning("chat: LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                self._listen_conn = None
                conn.terminate()
            self.stats["reconnects"] += 1
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _catch_up(self) -> None:
        """After (re)LISTENing: what each open room missed while the connection was down."""
        rooms = list(self._rooms.values())
        if not rooms:
            return
        for room in rooms:
            await self._load_settings_only(room)
        rows = await chat_db.messages_after(
            self._pool, [r.live_id for r in rooms], [r.catch_up_after for r in rooms],
            CATCH_UP_LIMIT,
        )  # fmt: skip
        for row in rows:
            self._deliver(int(row["live_id"]), int(row["id"]), _message_from_row(row))
        # Deletions NOTIFYed while the connection was down, of messages clients already show.
        seen = [i for room in rooms for i in room.seen_ids]
        for row in await chat_db.deleted_among(self._pool, seen):
            if (open_room := self._rooms.get(int(row["live_id"]))) is not None:
                open_room.delete_message(int(row["id"]))

    async def _load_settings_only(self, room: Room) -> None:
        settings = await chat_db.room_settings(self._pool, room.live_id)
        if settings is None:
            return
        room.chat_enabled = bool(settings["chat_enabled"])
        room.slow.set(int(settings["chat_slow_mode_s"]))
        room.moderators = await chat_db.moderator_ids(self._pool, room.live_id)
        room.sanctions = {
            (int(r["user_id"]), r["kind"]): r["until"].timestamp()
            for r in await chat_db.active_sanctions(self._pool, room.live_id)
        }

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        try:
            events = json.loads(str(payload))
            if not isinstance(events, list):
                raise ValueError("not a list")
            for event in events:
                self._apply(event)
        except (ValueError, KeyError, TypeError) as exc:
            self.stats["bad_notifications"] += 1
            log.warning("chat: ignored a malformed notification (%s)", exc)

    def _apply(self, event: Json) -> None:
        kind = event["t"]
        room = self._rooms.get(int(event["live_id"]))
        if room is None:
            return
        if kind == "msg":
            self._deliver(room.live_id, int(event["id"]), message_event(
                int(event["id"]), event["user_id"], event["username"], event["text"],
                event["created_at"], event.get("tip"),
            ))  # fmt: skip
        elif kind == "del":
            room.delete_message(int(event["id"]))
        elif kind == "sanction":
            self._sanction(room, int(event["user_id"]), event["kind"], event["until"])
        elif kind == "moderator":
            if event["on"]:
                room.moderators.add(int(event["user_id"]))
            else:
                room.moderators.discard(int(event["user_id"]))
        elif kind == "room":
            self._room_changed(room, bool(event["chat_enabled"]), int(event["slow_mode_s"]))

    def _deliver(self, live_id: int, message_id: int, event: Json) -> None:
        room = self._rooms.get(live_id)
        if room is not None and room.remember(message_id):
            room.add_message(event)

    def _sanction(self, room: Room, user_id: int, kind: str, until: str) -> None:
        ends = datetime.fromisoformat(until).timestamp()
        room.sanctions[(user_id, kind)] = ends
        active = ends > time.time()
        code = {"mute": "muted", "ban": "banned"}[kind]
        event = system_event(code if active else "un" + code, f"user {user_id} {kind}")
        event.update(user_id=user_id, until=until if active else None)
        room.broadcast(frame(event))
        if kind != "ban" or not active:
            return
        for client in [c for c in room.clients if c.user is not None and c.user.id == user_id]:
            client.push(frame(error_event("banned", "you are banned from this chat")))
            client.push({"type": "websocket.close", "code": 1008, "reason": "banned"})
            self.leave(client)

    def _room_changed(self, room: Room, enabled: bool, slow_mode_s: int) -> None:
        if enabled != room.chat_enabled:
            room.chat_enabled = enabled
            code = "chat_enabled" if enabled else "chat_disabled"
            room.broadcast(frame(system_event(code, "chat is " + ("on" if enabled else "off"))))
        if slow_mode_s != room.slow.seconds:
            room.slow.set(slow_mode_s)
            text = f"one message every {slow_mode_s} s" if slow_mode_s else "slow mode off"
            event = system_event("slow_mode", text)
            event["seconds"] = slow_mode_s
            room.broadcast(frame(event))

    # --- stream health (from the packager process of each live) ---

    def _on_health(self, payload: str) -> None:
        """A ``live_health`` sample: to the owner's and admins' clients of the room, never to
        viewers (what a studio page shows is the streamer's business)."""
        try:
            event = json.loads(payload)
            room = self._rooms.get(int(event["live_id"]))
            sample = event["sample"]
            if not isinstance(sample, dict):
                raise TypeError("the sample is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            self.stats["bad_notifications"] += 1
            log.warning("chat: ignored a malformed health notification (%s)", exc)
            return
        if room is None or not (managers := room.managers()):
            return
        message = frame({"type": "health", "sample": sample})
        for client in managers:
            client.push(message)

    # --- viewer counts ---

    def heartbeat(self, live_id: int, player_id: str | None, address: str) -> tuple[str, Beat]:
        """An HLS player's heartbeat from a client ``address``: (the id it sends next time,
        what became of this beat). Without an id this process's deployment issued for this
        live, the player gets a new one and counts from its next heartbeat: a client can ask
        for ids, never make them up, and the ones counted per address are bounded."""
        if player_id is None or not self.player_ids.valid(live_id, player_id):
            return self.player_ids.issue(live_id), Beat.ISSUED
        group = address_group(address)
        return player_id, self.heartbeats.beat(live_id, group, player_id, time.monotonic())

    def local_counts(self) -> dict[int, int]:
        counts = self.heartbeats.counts(time.monotonic())
        for live_id, room in self._rooms.items():
            sockets = socket_viewers((c.viewer_key for c in room.clients),
                                     self.config.viewers_per_address)  # fmt: skip
            counts[live_id] = counts.get(live_id, 0) + sockets
        for source in self.viewer_sources:
            for live_id, viewers in source().items():
                counts[live_id] = counts.get(live_id, 0) + viewers
        return counts

    async def report_once(self) -> None:
        counts = self.local_counts()
        self.totals = await chat_db.report_viewers(
            self._pool, process_id=self.process_id, live_ids=list(counts),
            counts=list(counts.values()), stale_after_s=2 * self.config.report_interval,
        )  # fmt: skip
        for live_id, room in list(self._rooms.items()):  # a broadcast may close a room
            total = self.totals.get(live_id, 0)
            if total != room.viewer_count:
                room.viewer_count = total
                room.broadcast(frame({"type": "viewer_count", "count": total}))

    async def _report_forever(self) -> None:
        last_clean = time.monotonic()
        while True:
            try:
                await self.report_once()
                if time.monotonic() - last_clean > TICKET_CLEANUP_S:
                    last_clean = time.monotonic()
                    await chat_db.delete_expired_tickets(self._pool)
            except DB_ERRORS as exc:
                log.warning("chat: viewer report failed, will retry: %s", exc)
            await asyncio.sleep(self.config.report_interval)


def _payload_to(callback: Callable[[str], object]) -> Callable[..., None]:
    def on_notify(conn: object, pid: int, channel: str, payload: object) -> None:
        try:
            callback(str(payload))
        except Exception:  # a bug in one consumer must not take the LISTEN connection down
            log.exception("%s: a notification handler failed", channel)

    return on_notify


def _message_from_row(row: asyncpg.Record) -> Json:
    created: Any = row["created_at"]
    tip = json.loads(row["tip"]) if row["tip"] is not None else None
    return message_event(int(row["id"]), row["user_id"], row["username"], row["content"],
                         created.isoformat(), tip)  # fmt: skip
