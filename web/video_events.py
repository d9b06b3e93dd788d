"""Processing progress fanned out to the server-sent event streams of this process.

Workers NOTIFY each change of a video's processing state (``db.videos.PROGRESS_CHANNEL``); the
chat hub's one LISTEN connection per process hands the payloads here, and each open stream of
that video gets them through a small queue of its own. A stream that does not read keeps only
the newest states: progress is a level, not a log, so dropping the oldest loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

log = logging.getLogger(__name__)

QUEUE_STATES = 8
MAX_STREAMS = 10_000


class VideoEvents:
    def __init__(self) -> None:
        self._streams: dict[int, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._count = 0

    def subscribe(self, video_id: int) -> asyncio.Queue[dict[str, Any]]:
        if self._count >= MAX_STREAMS:
            from web.errors import ApiError

            raise ApiError(503, "too_many_streams", "too many progress streams open; retry later")
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_STATES)
        self._streams.setdefault(video_id, set()).add(queue)
        self._count += 1
        return queue

    def unsubscribe(self, video_id: int, queue: asyncio.Queue[dict[str, Any]]) -> None:
        streams = self._streams.get(video_id)
        if streams is not None and queue in streams:
            streams.discard(queue)
            self._count -= 1
            if not streams:
                del self._streams[video_id]

    def on_notify(self, payload: str) -> None:
        try:
            state = json.loads(payload)
            video_id = int(state["video_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("video progress: unreadable notification %r", payload[:200])
            return
        for queue in self._streams.get(video_id, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(state)

    @property
    def streams(self) -> int:
        return self._count
