"""chat.client.ChatClient: sends start at once, a waiting send queues the rest in order, and a
client whose queue overflows is dropped without ever blocking the caller.

The "socket" here is an asyncio coroutine function standing in for uvicorn's ``send`` with the
same contract (it returns at once while writable, waits while not): the real one is exercised
end to end in test_websocket.py and test_slow_client.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from chat.client import ChatClient
from chat.types import FRAME_KEY


class Socket:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.fail = False

    async def send(self, message: dict[str, Any]) -> None:
        await self.writable.wait()
        if self.fail:
            raise ConnectionResetError("gone")
        self.sent.append(message["text"])


def msg(n: int) -> dict[str, Any]:
    return {"type": "websocket.send", "text": str(n)}


async def test_a_writable_socket_is_written_at_once_without_a_task() -> None:
    socket = Socket()
    dropped: list[str] = []
    client = ChatClient(socket.send, live_id=1, user=None, max_queue=4,
                        close=lambda c, reason: dropped.append(reason))  # fmt: skip
    before = len(asyncio.all_tasks())
    for n in range(100):
        client.push(msg(n))
    assert socket.sent == [str(n) for n in range(100)]  # synchronously, in order
    assert len(asyncio.all_tasks()) == before
    assert dropped == []


async def test_a_waiting_send_queues_in_order_then_drains() -> None:
    socket = Socket()
    dropped: list[str] = []
    client = ChatClient(socket.send, live_id=1, user=None, max_queue=4,
                        close=lambda c, reason: dropped.append(reason))  # fmt: skip
    client.push(msg(0))
    socket.writable.clear()
    for n in range(1, 6):  # 1 waits in the send, 2..5 fill the queue of 4
        client.push(msg(n))
    assert socket.sent == ["0"]
    socket.writable.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert socket.sent == [str(n) for n in range(6)]
    assert dropped == []
    client.push(msg(6))  # idle again: at once
    assert socket.sent[-1] == "6"


async def test_overflow_drops_the_client_and_never_blocks() -> None:
    socket = Socket()
    dropped: list[str] = []
    client = ChatClient(socket.send, live_id=1, user=None, max_queue=3,
                        close=lambda c, reason: dropped.append(reason))  # fmt: skip
    socket.writable.clear()
    for n in range(10):
        client.push(msg(n))  # returns at once every time
    assert dropped == ["slow"]
    assert client.closed
    client.discard()
    await asyncio.sleep(0)
    assert socket.sent == []


async def test_a_failing_send_drops_the_client() -> None:
    socket = Socket()
    socket.fail = True
    dropped: list[str] = []
    client = ChatClient(socket.send, live_id=1, user=None, max_queue=3,
                        close=lambda c, reason: dropped.append(reason))  # fmt: skip
    client.push(msg(0))
    assert dropped == ["send failed: ConnectionResetError"]
    client.push(msg(1))
    assert dropped == ["send failed: ConnectionResetError"]


class FrameSocket(Socket):
    """A socket that also offers ``write_frame`` (web.ws_protocol), refused while not writable."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []

    def write_frame(self, data: bytes) -> bool:
        if not self.writable.is_set():
            return False
        self.frames.append(data)
        return True


def framed(n: int) -> dict[str, Any]:
    return {**msg(n), FRAME_KEY: str(n).encode()}


async def test_a_serialised_frame_is_written_as_is_and_send_is_the_fallback() -> None:
    socket = FrameSocket()
    client = ChatClient(socket.send, live_id=1, user=None, max_queue=4,
                        close=lambda c, reason: None, write_frame=socket.write_frame)  # fmt: skip
    client.push(framed(0))
    client.push(msg(1))  # no frame (an error event built elsewhere): the ASGI send
    assert socket.frames == [b"0"]
    assert socket.sent == ["1"]


async def test_frames_never_overtake_a_waiting_send() -> None:
    socket = FrameSocket()
    client = ChatClient(socket.send, live_id=1, user=None, max_queue=8,
                        close=lambda c, reason: None, write_frame=socket.write_frame)  # fmt: skip
    socket.writable.clear()
    client.push(framed(0))  # refused by write_frame: the send waits in a task
    socket.writable.set()  # writable again, but 0 is still waiting in its task
    client.push(framed(1))
    client.push(framed(2))
    assert socket.frames == []  # queued behind 0, not written past it
    for _ in range(20):
        await asyncio.sleep(0)
    assert socket.sent == ["0", "1", "2"]
    client.push(framed(3))  # idle again: the fast path
    assert socket.frames == [b"3"]
