"""Client frame sizes on the chat socket, as docs/chat.md describes them, on a real server.

Two limits apply: chat refuses events over MAX_CLIENT_FRAME (8 KiB) with a ``bad_event`` error
and keeps the connection; the WebSocket server (uvicorn, ``ws_max_size`` as ``streamd serve``
sets it) closes the connection with 1009 "message too big" on a frame over 64 KiB, before
reading it whole.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from chat.events import MAX_CLIENT_FRAME
from streamd.server import WEBSOCKET_OPTIONS
from tests.chat.chat_helpers import ChatServer
from tests.helpers import REPO

MESSAGE_TOO_BIG = 1009
WS_MAX_SIZE: int = WEBSOCKET_OPTIONS["ws_max_size"]
DOC = REPO / "docs" / "chat.md"


def _frame(size: int) -> str:
    """A valid message event of exactly ``size`` bytes."""
    empty = json.dumps({"type": "message", "text": ""})
    return json.dumps({"type": "message", "text": "a" * (size - len(empty))})


async def test_a_frame_over_8_kib_is_a_bad_event_and_the_connection_stays(
    server: ChatServer,
) -> None:
    owner = await server.make_user("creator")
    chat = await server.connect(await server.make_live(owner), owner)
    await chat.ws.send(_frame(MAX_CLIENT_FRAME + 1))
    assert (await chat.next_of("error"))["code"] == "bad_event"
    await chat.ws.send(_frame(WS_MAX_SIZE))  # the largest frame the server reads
    assert (await chat.next_of("error"))["code"] == "bad_event"
    await chat.say("still here")
    assert (await chat.next_of("message"))["text"] == "still here"


@pytest.mark.parametrize("size", [WS_MAX_SIZE + 1, 100_000])
async def test_a_frame_over_64_kib_closes_the_connection_with_1009(
    server: ChatServer, size: int
) -> None:
    owner = await server.make_user("creator")
    chat = await server.connect(await server.make_live(owner), owner)
    await chat.ws.send(_frame(size))
    await asyncio.wait_for(chat.ws.wait_closed(), 10)
    assert chat.ws.close_code == MESSAGE_TOO_BIG


def test_the_protocol_doc_states_both_limits() -> None:
    text = DOC.read_text()
    assert f"at most {MAX_CLIENT_FRAME // 1024} KiB" in text
    assert f"over {WS_MAX_SIZE // 1024} KiB" in text and f"{MESSAGE_TOO_BIG}" in text
