"""web.ws_protocol.FrameWritingProtocol under real uvicorn on loopback, with a real WebSocket
client (the ``websockets`` library): frames serialised once arrive as ordinary text messages,
interleave correctly with uvicorn's own sends, and ``write_frame`` refuses (writes nothing,
returns False) whenever the ordinary ``send`` would have to wait or fail: after a close, while
the peer does not read, after a disconnect, and when compression was negotiated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect

from chat.room import frame
from chat.types import FRAME_KEY
from tests.chat.chat_helpers import start_uvicorn
from web import ws_protocol
from web.ws_protocol import ABORT, WRITE_FRAME

Handler = Callable[[Callable[[bytes], bool], Any, Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, **options: Any) -> AsyncIterator[str]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await handler(scope["extensions"][WRITE_FRAME], receive, send)

    server, task, port = await start_uvicorn(app, lifespan="off", **options)
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def event(n: int, size: int = 10) -> dict[str, Any]:
    return frame({"type": "message", "id": n, "text": "é" * size})


async def test_frames_arrive_in_order_interleaved_with_ordinary_sends() -> None:
    results: list[bool] = []

    async def handler(write: Callable[[bytes], bool], receive: Any, send: Any) -> None:
        for n in range(3):
            results.append(write(event(n)[FRAME_KEY]))
        await send({"type": "websocket.send", "text": event(3)["text"]})  # uvicorn's own
        results.append(write(event(4, size=70_000)[FRAME_KEY]))  # 64-bit length header
        await receive()  # until the client closes

    async with serving(handler) as url, connect(url, max_size=None) as ws:
        texts = [await ws.recv() for _ in range(5)]
    assert results == [True] * 4
    assert texts == [event(n)["text"] for n in range(4)] + [event(4, size=70_000)["text"]]


async def test_refuses_after_the_app_closed_the_socket() -> None:
    results: list[bool] = []

    async def handler(write: Callable[[bytes], bool], receive: Any, send: Any) -> None:
        await send({"type": "websocket.close", "code": 1000})
        results.append(write(event(0)[FRAME_KEY]))

    async with serving(handler) as url, connect(url) as ws:
        with pytest.raises(Exception, match="1000"):
            await ws.recv()
    assert results == [False]


async def test_refuses_while_the_peer_does_not_read_and_after_it_left() -> None:
    written: list[int] = []
    after: list[bool] = []
    stopped = asyncio.Event()
    gone = asyncio.Event()

    async def handler(write: Callable[[bytes], bool], receive: Any, send: Any) -> None:
        data = event(0, size=4096)[FRAME_KEY]
        n = 0
        while n < 200_000 and write(data):  # the client reads nothing: the buffers fill
            n += 1
            if n % 64 == 0:
                await asyncio.sleep(0)  # let the transport report its high-water mark
        written.append(n)
        stopped.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass
        gone.set()
        after.append(write(data))

    async with serving(handler) as url:
        # max_queue=1: the client library stops reading its socket after one message
        ws = await connect(url, max_queue=1, max_size=None)
        await asyncio.wait_for(stopped.wait(), 30)
        ws.transport.abort()  # leave without a closing handshake
        await asyncio.wait_for(gone.wait(), 30)
    assert 0 < written[0] < 200_000  # it stopped by itself, at uvicorn's high-water mark
    assert after == [False]


async def test_refuses_when_compression_was_negotiated() -> None:
    results: list[bool] = []

    async def handler(write: Callable[[bytes], bool], receive: Any, send: Any) -> None:
        results.append(write(event(0)[FRAME_KEY]))
        await send({"type": "websocket.send", "text": event(1)["text"]})
        await receive()

    async with serving(handler, ws_per_message_deflate=True) as url, connect(url) as ws:
        assert ws.protocol.extensions  # deflate negotiated
        assert await ws.recv() == event(1)["text"]
    assert results == [False]


async def test_without_the_upstream_attributes_it_offers_nothing_and_sends_work(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An uvicorn that renamed an attribute write_frame reads (simulated by asking for one it
    does not have): no extension is offered, one warning is logged, and the ordinary send path
    (what web.chat and chat.client use without the extension) still delivers."""
    monkeypatch.setattr(
        ws_protocol, "UPSTREAM_ATTRIBUTES", (*ws_protocol.UPSTREAM_ATTRIBUTES, "renamed_upstream")
    )
    monkeypatch.setattr(ws_protocol.FrameWritingProtocol, "_warned", False)
    offered: list[set[str]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        offered.append(set(scope.get("extensions", {})) & {WRITE_FRAME, ABORT})
        await send({"type": "websocket.send", "text": event(0)["text"]})
        await receive()

    server, task, port = await start_uvicorn(app, lifespan="off")
    try:
        for _ in range(2):
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                assert await ws.recv() == event(0)["text"]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
    assert offered == [set(), set()]
    warnings = [r for r in caplog.records if r.name == "web.ws_protocol"]
    assert len(warnings) == 1 and "renamed_upstream" in warnings[0].getMessage()
