"""Commands to the ingest of this process from any process: NOTIFY ``live_control``.

``POST /api/lives/{id}/stop`` (or an account being deactivated) may run in a process that does
not hold the publisher. :func:`db.lives.request_stop` marks the live ended and NOTIFYs
``live_control`` with ``{"live_id": 7, "action": "stop", "reason": "..."}``; every process
hands the payload to :class:`LiveControl`, and the one holding live 7 cuts it. A payload
that is not one of ours is logged and ignored: a NOTIFY must never break the listener.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

#: (live id, reason) -> whether this process held the publish.
StopLive = Callable[[int, str], bool]


class LiveControl:
    def __init__(self, stop_live: StopLive) -> None:
        self._stop_live = stop_live

    def on_notify(self, payload: str) -> bool:
        """Act on one ``live_control`` payload; True if a publisher here was cut."""
        try:
            command = json.loads(payload)
            live_id, action = command["live_id"], command["action"]
            reason = str(command.get("reason") or "stopped")[:200]
        except (ValueError, TypeError, KeyError):
            log.warning("live_control: ignored a malformed payload %r", payload[:200])
            return False
        if not isinstance(live_id, int) or isinstance(live_id, bool) or action != "stop":
            log.warning("live_control: ignored %r", payload[:200])
            return False
        return self._stop_live(live_id, reason)
