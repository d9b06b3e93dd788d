"""Type aliases shared by the chat modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

# Sends one ASGI message (``{"type": "websocket.send", "text": ...}``) to one client.
AsgiSend: TypeAlias = Callable[[dict[str, Any]], Awaitable[None]]
# A JSON object received from PostgreSQL or a client, after json.loads.
Json: TypeAlias = dict[str, Any]
