"""One live's chat room in this process: its clients, recent history, settings and sanctions.

Each event is encoded and framed once, and the same ASGI message object is handed to every
client.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from websockets.frames import Frame, Opcode

from chat.client import ChatClient
from chat.events import encode
from chat.rules import SlowMode
from chat.types import FRAME_KEY, Json

log = logging.getLogger(__name__)

HISTORY = 50  # messages in a welcome
# Ranks in a room's moderation: a moderator acts only on those ranked below it.
VIEWER, MODERATOR, OWNER, ADMIN = range(4)
SEEN_IDS = 4096  # message ids remembered to deliver each message once (NOTIFY + catch-up)


def frame(event: Json) -> dict[str, Any]:
    """An ASGI message carrying one event, shared by every recipient, with its WebSocket frame
    serialised once for the clients that can take it as bytes (chat.client)."""
    text = encode(event)
    data = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)  # servers never mask
    return {"type": "websocket.send", "text": text, FRAME_KEY: data}


class Room:
    def __init__(self, live_id: int) -> None:
        self.live_id = live_id
        self.owner_id = 0
        self.chat_enabled = True
        self.slow = SlowMode()
        self.moderators: set[int] = set()
        self.sanctions: dict[tuple[int, str], float] = {}  # (user id, kind) -> until (epoch s)
        self.clients: dict[ChatClient, None] = {}  # insertion-ordered set
        self.recent: deque[Json] = deque(maxlen=HISTORY)
        self._seen: deque[int] = deque()
        self._seen_set: set[int] = set()
        self._tombstoned: deque[int] = deque(maxlen=SEEN_IDS)  # deletions announced lately
        self.viewer_count = 0  # the last total sent to the clients

    # --- messages ---

    def remember(self, message_id: int) -> bool:
        """Note a message id; False when it was delivered already."""
        if message_id in self._seen_set:
            return False
        self._seen.append(message_id)
        self._seen_set.add(message_id)
        if len(self._seen) > SEEN_IDS:
            self._seen_set.discard(self._seen.popleft())
        return True

    @property
    def catch_up_after(self) -> int:
        """Messages with ids above this may have been missed while disconnected."""
        return min(self._seen) if self._seen else 0

    def add_message(self, event: Json) -> None:
        self.recent.append(event)
        self.broadcast(frame(event))

    @property
    def seen_ids(self) -> list[int]:
        """The ids of the messages delivered here lately (what clients may be showing)."""
        return list(self._seen)

    def delete_message(self, message_id: int) -> None:
        if message_id in self._tombstoned:
            return  # announced already (a NOTIFY and a catch-up may both report it)
        self._tombstoned.append(message_id)
        kept = [e for e in self.recent if e["id"] != message_id]
        if len(kept) != len(self.recent):
            self.recent = deque(kept, maxlen=HISTORY)
        self.broadcast(frame({"type": "message_deleted", "id": message_id}))

    def broadcast(self, message: dict[str, Any]) -> None:
        for client in list(self.clients):
            client.push(message)

    def managers(self) -> list[ChatClient]:
        """The clients of the live's owner and of admins: those who see its stream health."""
        return [c for c in self.clients
                if c.user is not None and self.manages(c.user.id, c.user.role)]  # fmt: skip

    # --- who may do what ---

    def sanctioned(self, user_id: int, kind: str, now: float) -> float | None:
        """Seconds left of a mute or ban, or None."""
        until = self.sanctions.get((user_id, kind))
        if until is None:
            return None
        if until <= now:
            del self.sanctions[(user_id, kind)]
            return None
        return until - now

    def manages(self, user_id: int, role: str) -> bool:
        return user_id == self.owner_id or role == "admin"

    def can_moderate(self, user_id: int, role: str) -> bool:
        return user_id == self.owner_id or role == "admin" or user_id in self.moderators

    def may_act(self, actor_id: int, actor_role: str, action: str, *, target_id: int | None,
                target_role: str | None, target_is_moderator: bool) -> bool:  # fmt: skip
        """May a moderator of this room ``action`` (delete, mute, ban) the target (for delete,
        the message's author; None when its account is gone)?

        Only users ranked below the actor: a named moderator acts on viewers, the owner also on
        moderators, an admin also on the owner; nobody on an admin. You may delete your own
        messages, never mute or ban yourself; nobody mutes or bans the owner in its own room
        (an admin deactivates the account instead).
        """
        if target_id == actor_id:
            return action == "delete"
        if target_id == self.owner_id and action != "delete":
            return False
        actor = self._rank(actor_id, actor_role, is_moderator=actor_id in self.moderators)
        return actor > self._rank(target_id, target_role, is_moderator=target_is_moderator)

    def _rank(self, user_id: int | None, role: str | None, *, is_moderator: bool) -> int:
        if role == "admin":
            return ADMIN
        if user_id is not None and user_id == self.owner_id:
            return OWNER
        return MODERATOR if is_moderator else VIEWER
