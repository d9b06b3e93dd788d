"""One connected WebSocket client: a bounded send queue that never blocks the room.

A room hands every client the same pre-encoded ASGI message, which also carries the event's
WebSocket frame serialised once. When the server offers ``streamd.write_frame`` (web.ws_protocol)
and the socket is open and below its high-water mark, those bytes are written as they are: the
common case is one function call and one ``transport.write``. Otherwise the ASGI ``send`` is
started at once, in the caller's stack (as Python 3.12's eager tasks do); uvicorn's send to a
writable socket finishes without suspending, so that costs no task either. Only a send that has
to wait (the client is not reading fast enough) becomes a task; while it waits, later events
queue, and a client whose queue reaches its bound is dropped: the room never waits for it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any

from chat.types import FRAME_KEY, AsgiSend, FrameWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChatUser:
    id: int
    username: str
    role: str


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], pending: Any) -> Generator[Any, Any, None]:
    """Hand a coroutine that already ran up to its first suspension over to a task: yield what
    it was waiting on to the task, then let it go on."""
    try:
        yield pending
    except BaseException:
        coro.close()
        raise
    yield from coro  # a native coroutine, resumed where it stopped


class ChatClient:
    """Sends a room's events to one WebSocket, in order, through a bounded queue."""

    __slots__ = (
        "_close", "_closed", "_eager", "_max_queue", "_queue", "_send", "_task", "_write",
        "live_id", "user", "viewer_key",
    )  # fmt: skip

    def __init__(
        self,
        send: AsgiSend,
        *,
        live_id: int,
        user: ChatUser | None,
        max_queue: int,
        close: Callable[[ChatClient, str], None],
        write_frame: FrameWriter | None = None,
        viewer_key: str = "",
    ) -> None:
        """``viewer_key``: who the socket counts as among the room's viewers
        (chat.viewers.viewer_key)."""
        self._send = send
        self._write = write_frame
        self._eager = inspect.iscoroutinefunction(send)  # checked once, not per event
        self._close = close
        self._max_queue = max_queue
        self._queue: deque[dict[str, Any]] = deque()
        self._task: asyncio.Future[None] | None = None
        self._closed = False
        self.live_id = live_id
        self.user = user
        self.viewer_key = viewer_key

    @property
    def closed(self) -> bool:
        return self._closed

    def push(self, message: dict[str, Any]) -> None:
        """Send an ASGI message now if the socket takes it; else queue it (bounded)."""
        if self._closed:
            return
        if self._task is not None:  # a send is waiting: keep the order, queue behind it
            if len(self._queue) >= self._max_queue:
                self._fail("slow")
                return
            self._queue.append(message)
            return
        if self._write is not None:
            data = message.get(FRAME_KEY)
            if data is not None and self._write(data):
                return  # written as it is: the common case
        if not self._eager:  # not a coroutine function: nothing to start at once
            self._task = asyncio.ensure_future(self._drain(self._send(message)))
            return
        coro: Coroutine[Any, Any, None] = self._send(message)  # type: ignore[assignment]
        try:
            pending = coro.send(None)
        except StopIteration:
            return  # sent without waiting
        except Exception as exc:  # the connection went away under the send
            self._fail(f"send failed: {type(exc).__name__}")
            return
        self._task = asyncio.ensure_future(self._drain(_resume(coro, pending)))

    async def _drain(self, first: Awaitable[None]) -> None:
        try:
            await first
            while self._queue and not self._closed:
                await self._send(self._queue.popleft())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(f"send failed: {type(exc).__name__}")
        finally:
            self._task = None

    def _fail(self, reason: str) -> None:
        if not self._closed:
            self._closed = True
            self._queue.clear()
            self._close(self, reason)

    def discard(self) -> None:
        """The connection ended: stop sending (a waiting send is cancelled)."""
        self._closed = True
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()
