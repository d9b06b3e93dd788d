"""The WebSocket protocol's JSON events (docs/chat.md): built and encoded once per room, and the
client's actions parsed with every field checked.

Server to client: ``welcome``, ``message``, ``message_deleted``, ``viewer_count``, ``system``,
``error``. Client to server: ``message``, ``delete``, ``mute``, ``ban``, ``slow_mode``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chat.rules import MAX_RAW_TEXT, RuleError
from chat.types import Json

MAX_CLIENT_FRAME = 8 * 1024  # bytes of one client event; larger frames are refused
MAX_ID = 2**63 - 1
MAX_SANCTION_S = 30 * 86400
MAX_SLOW_MODE_S = 3600
ACTIONS = ("message", "delete", "mute", "ban", "slow_mode")


def encode(event: Json) -> str:
    """One event as the text of one WebSocket frame."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=_iso)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def message_event(
    message_id: int,
    user_id: int | None,
    username: str | None,
    text: str,
    created_at: Any,
    tip: Json | None = None,
) -> Json:
    """``tip``: ``{"amount", "currency", "display"}`` when the message is a paid tip."""
    user = None if user_id is None else {"id": user_id, "username": username}
    event: Json = {"type": "message", "id": message_id, "user": user, "text": text,
                   "created_at": created_at}  # fmt: skip
    if tip is not None:
        event["tip"] = tip
    return event


def error_event(code: str, message: str, retry_after: float | None = None) -> Json:
    event: Json = {"type": "error", "code": code, "message": message}
    if retry_after is not None:
        event["retry_after"] = round(retry_after, 1)
    return event


def system_event(code: str, message: str) -> Json:
    return {"type": "system", "code": code, "message": message}


@dataclass(frozen=True, slots=True)
class Action:
    """One parsed client event. ``target``: a message id (delete) or a user id (mute, ban);
    ``seconds``: a duration (mute, ban: 0 lifts it) or the slow-mode interval (0: off)."""

    type: str
    text: str = ""
    target: int = 0
    seconds: int | None = None


def parse_action(frame: str | bytes) -> Action:
    """A client frame as an Action, or RuleError naming what is wrong with it."""
    if isinstance(frame, bytes):
        raise RuleError("bad_event", "events are JSON text frames")
    if len(frame) > MAX_CLIENT_FRAME:
        raise RuleError("bad_event", f"events are at most {MAX_CLIENT_FRAME} characters")
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        raise RuleError("bad_event", "not a JSON object") from None
    if not isinstance(data, dict):
        raise RuleError("bad_event", "not a JSON object")
    kind = data.get("type")
    if kind not in ACTIONS:
        raise RuleError("bad_event", "type must be one of " + ", ".join(ACTIONS))
    if kind == "message":
        text = data.get("text")
        if not isinstance(text, str):
            raise RuleError("bad_event", "text must be a string")
        if len(text) > MAX_RAW_TEXT:
            raise RuleError("too_long", "messages are at most 500 characters")
        return Action("message", text=text)
    if kind == "delete":
        return Action("delete", target=_int(data, "message_id", 1, MAX_ID))
    if kind in ("mute", "ban"):
        duration = _int(data, "duration", 0, MAX_SANCTION_S)
        return Action(kind, target=_int(data, "user_id", 1, MAX_ID), seconds=duration)
    seconds: int | None = None
    if data.get("seconds") is not None:
        seconds = _int(data, "seconds", 0, MAX_SLOW_MODE_S)
    if data.get("enabled") is False:
        seconds = 0
    return Action("slow_mode", seconds=seconds)


def _int(data: Json, name: str, lo: int, hi: int) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RuleError("bad_event", f"{name} must be an integer from {lo} to {hi}")
    return value
