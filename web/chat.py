"""Chat routes: tickets, player heartbeats, moderators, the moderation record, and the WebSocket
``/ws/lives/{live_id}/chat`` (protocol: docs/chat.md). The rules live in chat/; this module
authenticates, validates and hands over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from chat.client import ChatClient, ChatUser
from chat.events import encode, error_event, parse_action
from chat.hub import Hub
from chat.rules import RuleError
from chat.viewers import Beat
from db import chat as chat_db
from db import lives, orders
from db.errors import DB_ERRORS
from db.pools import Database
from web import playback
from web.api import MAX_ID, Call, Endpoint
from web.authn import new_secret_token, token_digest
from web.errors import ApiError
from web.schemas import (
    ChatTicketOut,
    HeartbeatIn,
    HeartbeatOut,
    ModerationEntryOut,
    ModerationLogOut,
    PriceOut,
)
from web.ws_protocol import ABORT, WRITE_FRAME

log = logging.getLogger(__name__)

MAX_TICKET = 100  # characters of a ticket in the query string (issued ones have 43)
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


def _hub(call: Call) -> Hub:
    hub: Hub = call.request.app.state.chat
    return hub


async def _live_owner(call: Call, live_id: int) -> int:
    row = await lives.get_owner_and_key(call.db.primary, live_id)
    if row is None or not row["owner_active"]:
        raise ApiError(404, "not_found", "no such live")
    return int(row["user_id"])


async def create_ticket(call: Call) -> ChatTicketOut:
    """A ticket to post in a live's chat; a sold live's chat takes the posts of those who
    bought a ticket to it (and of its owner, moderators and admins): 402 for anyone else."""
    live_id = call.path_id("live_id")
    owner = await _live_owner(call, live_id)
    user = call.user
    if owner != user.id and not user.is_admin:
        price = await call.db.primary.fetchrow(
            "SELECT price_amount, price_currency FROM lives WHERE id = $1", live_id
        )
        sold = PriceOut.of(price["price_amount"], price["price_currency"]) if price else None
        if sold is not None and not (
            user.id in await chat_db.moderator_ids(call.db.primary, live_id)
            or await orders.entitled(call.db.primary, user.id, live_id=live_id)
        ):
            raise playback.payment_required("live", sold)
    ticket, digest = new_secret_token()
    ttl = int(call.settings.chat_ticket_ttl)
    await chat_db.create_ticket(
        call.db.primary, digest=digest, live_id=live_id, user_id=call.user.id,
        session_id=call.user.session_id, ttl_s=ttl,
    )  # fmt: skip
    return ChatTicketOut(ticket=ticket, expires_in=ttl)


async def heartbeat(call: Call) -> HeartbeatOut:
    live_id = call.path_id("live_id")
    body = await call.body(HeartbeatIn)
    await _live_owner(call, live_id)
    hub = _hub(call)
    # The address after trusted-proxy handling. A player past its address's bound still gets
    # its answer (a household on one address must keep playing), it just is not counted.
    player_id, beat = hub.heartbeat(live_id, body.player_id, call.client_ip)
    if beat is Beat.FULL:
        log.warning("chat: heartbeat of live %d refused: too many players tracked", live_id)
        raise ApiError(503, "busy", "too many players on this server; retry later",
                       headers={"Retry-After": "30"})  # fmt: skip
    return HeartbeatOut(player_id=player_id, viewer_count=hub.totals.get(live_id, 0),
                        interval=int(hub.config.heartbeat_interval))  # fmt: skip


async def _managed(call: Call, live_id: int) -> None:
    """The caller is the live's owner or an admin."""
    owner = await _live_owner(call, live_id)
    if owner != call.user.id and not call.user.is_admin:
        raise ApiError(403, "forbidden", "only the owner or an admin can do this")


async def add_moderator(call: Call) -> None:
    live_id = call.path_id("live_id")
    user_id = call.path_id("user_id")
    await _managed(call, live_id)
    if not await chat_db.add_moderator(
        call.db.primary, live_id=live_id, user_id=user_id, actor_id=call.user.id
    ):
        raise ApiError(404, "not_found", "no such user")


async def remove_moderator(call: Call) -> None:
    live_id = call.path_id("live_id")
    user_id = call.path_id("user_id")
    await _managed(call, live_id)
    if not await chat_db.remove_moderator(
        call.db.primary, live_id=live_id, user_id=user_id, actor_id=call.user.id
    ):
        raise ApiError(404, "not_found", "this user is not a moderator of this live")


async def moderation_log(call: Call) -> ModerationLogOut:
    live_id = call.path_id("live_id")
    await _managed(call, live_id)
    rows = await chat_db.moderation_log(call.db.primary, live_id)
    return ModerationLogOut(items=[ModerationEntryOut(**dict(r)) for r in rows])


async def lift_sanctions(call: Call) -> None:
    """The owner's and admins' way to end any mute or ban (an admin's own included), whoever
    set it; named moderators lift viewers' through the WebSocket (duration 0)."""
    live_id = call.path_id("live_id")
    user_id = call.path_id("user_id")
    await _managed(call, live_id)
    lifted = await chat_db.lift_sanctions(
        call.db.primary, live_id=live_id, user_id=user_id, actor_id=call.user.id
    )
    if not lifted:
        raise ApiError(404, "not_found", "this user has no mute or ban in this chat")
    log.info("chat: live %d: user %d lifted the %s of user %d", live_id, call.user.id,
             " and ".join(lifted), user_id)  # fmt: skip


LIVE = "/api/lives/{live_id:int}"
ENDPOINTS = [
    Endpoint("POST", LIVE + "/chat/ticket", create_ticket,
             "A single-use ticket to open the chat WebSocket as this user (a sold live: "
             "ticket holders only, 402 otherwise)", "chat",
             auth="user", response=ChatTicketOut, errors=(402,)),
    Endpoint("POST", LIVE + "/heartbeat", heartbeat,
             "An HLS player is watching (send every `interval` seconds)", "chat",
             body=HeartbeatIn, response=HeartbeatOut, errors=(503,)),
    Endpoint("PUT", LIVE + "/chat/moderators/{user_id:int}", add_moderator,
             "Name a chat moderator (owner or admin)", "chat", auth="user", errors=(403,)),
    Endpoint("DELETE", LIVE + "/chat/moderators/{user_id:int}", remove_moderator,
             "Remove a chat moderator (owner or admin)", "chat", auth="user", errors=(403,)),
    Endpoint("GET", LIVE + "/chat/moderation", moderation_log,
             "Every moderation action in this chat (owner or admin)", "chat", auth="user",
             response=ModerationLogOut, errors=(403,)),
    Endpoint("DELETE", LIVE + "/chat/sanctions/{user_id:int}", lift_sanctions,
             "Lift a user's mute and ban in this chat now (owner or admin)", "chat",
             auth="user", errors=(403,)),
]  # fmt: skip


# --- the WebSocket ---


async def _refuse(send: Send, code: str, message: str, close_code: int) -> None:
    with contextlib.suppress(OSError):  # the client may be gone already (ClientDisconnected)
        await send({"type": "websocket.send", "text": encode(error_event(code, message))})
        await send({"type": "websocket.close", "code": close_code, "reason": code})


async def _ticket_user(db: Database, scope: Scope, live_id: int) -> ChatUser | None:
    """The user of the connection's ticket; None without one; RuleError for a bad one."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    tickets = query.get("ticket")
    if not tickets:
        return None
    ticket = tickets[0]
    if len(tickets) > 1 or not 0 < len(ticket) <= MAX_TICKET:
        raise RuleError("invalid_ticket", "one ticket from POST /api/lives/{id}/chat/ticket")
    row = await chat_db.use_ticket(db.primary, digest=token_digest(ticket), live_id=live_id)
    if row is None:
        raise RuleError("invalid_ticket", "unknown, used or expired ticket, or another live's")
    return ChatUser(int(row["id"]), row["username"], row["role"])


async def chat_socket(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI endpoint: the room sends to this ``send`` directly (chat.client)."""
    if (await receive())["type"] != "websocket.connect":
        return
    app: Any = scope["app"]
    hub: Hub = app.state.chat
    live_id: int = scope["path_params"]["live_id"]
    await send({"type": "websocket.accept"})
    peer = scope.get("client") or ("?", 0)
    try:
        if not 1 <= live_id <= MAX_ID:
            raise RuleError("not_found", "no such live")
        user = await _ticket_user(app.state.db, scope, live_id)
        dropped: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_drop(reason: str) -> None:
            if not dropped.done():
                dropped.set_result(reason)

        write_frame = scope.get("extensions", {}).get(WRITE_FRAME)  # streamd's uvicorn only
        client = await hub.join(live_id, send, user, on_drop, write_frame, address=peer[0])
    except RuleError as exc:
        log.info("chat: %s refused on live %d (%s)", peer[0], live_id, exc.code)
        await _refuse(send, exc.code, exc.message, POLICY_VIOLATION)
        return
    except DB_ERRORS as exc:
        log.warning("chat: live %d: join failed: %s", live_id, exc)
        await _refuse(send, "unavailable", "chat is unavailable; try again", TRY_AGAIN_LATER)
        return
    try:
        await _serve(hub, client, receive, dropped, peer[0])
    finally:
        hub.leave(client)
    if dropped.done() and dropped.result() == "slow":
        # Its buffers are full: a close frame would wait behind them for as long as the peer
        # does not read. Reset the connection (streamd's uvicorn protocol; others close).
        abort = scope.get("extensions", {}).get(ABORT)
        if abort is not None:
            abort()


async def _serve(
    hub: Hub, client: ChatClient, receive: Receive, dropped: asyncio.Future[str], peer: str
) -> None:
    receiving: asyncio.Future[Any] | None = None
    try:
        while True:
            receiving = asyncio.ensure_future(receive())
            await asyncio.wait({receiving, dropped}, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                return  # dropped (too slow, banned): stop reading; uvicorn closes the socket
            message = receiving.result()
            if message["type"] != "websocket.receive":
                return
            frame = message.get("text")
            try:
                action = parse_action(frame if frame is not None else message.get("bytes", b""))
            except RuleError as exc:
                log.info("chat: %s sent a bad event on live %d: %s", peer, client.live_id,
                         exc.message)  # fmt: skip
                client.push({"type": "websocket.send",
                             "text": encode(error_event(exc.code, exc.message))})  # fmt: skip
                continue
            await hub.act(client, action)
    finally:
        if receiving is not None and not receiving.done():
            receiving.cancel()


_SOCKET_PATH = re.compile(r"^/ws/lives/([0-9]{1,19})/chat$")


class ChatSocketMiddleware:
    """Routes chat WebSockets straight to :func:`chat_socket`, outside the other middleware.

    A room calls each client's ``send`` for every event, so every wrapper around it is paid
    once per delivery: here the endpoint gets the server's own ``send`` (bench/chat_fanout.py
    measured the wrappers of Starlette and of web.middleware at a fifth of the fan-out cost).
    The request-id and metrics middleware only act on HTTP requests anyway. Other paths, and
    malformed chat paths, go on to the app (and its 404).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            match = _SOCKET_PATH.match(scope["path"])
            if match is not None:
                scope["path_params"] = {"live_id": int(match[1])}
                await chat_socket(scope, receive, send)
                return
        await self.app(scope, receive, send)
