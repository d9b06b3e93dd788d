"""Type aliases shared by the chat modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

# Sends one ASGI message (``{"type": "websocket.send", "text": ...}``) to one client.
AsgiSend: TypeAlias = Callable[[dict[str, Any]], Awaitable[None]]
# A JSON object received from PostgreSQL or a client, after json.loads.
Json: TypeAlias = dict[str, Any]
# Writes one serialised WebSocket frame to one client if it can at once (web.ws_protocol).
FrameWriter: TypeAlias = Callable[[bytes], bool]
# The key of an ASGI send message that also carries its serialised frame (chat.room.frame).
FRAME_KEY = "streamd.frame"
