"""A client that stops reading is dropped and never delays the others."""

from __future__ import annotations

import asyncio
import json
import socket

from websockets.asyncio.client import connect

from db import chat as chat_db
from tests.chat.chat_helpers import ChatServer, MakeServer


async def test_a_slow_client_is_disconnected_and_does_not_delay_the_room(
    make_server: MakeServer,
) -> None:
    server: ChatServer = await make_server(chat_send_queue=16)
    owner = await server.make_user("creator")
    live = await server.make_live(owner)
    fast = await server.connect(live)

    # The slow client reads nothing: a tiny receive buffer, and websockets stops reading the
    # socket once one frame waits unread (max_queue=1).
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    slow = await connect(f"ws://127.0.0.1:{server.port}/ws/lives/{live}/chat", sock=sock,
                         max_queue=1)  # fmt: skip
    assert server.hub.clients_of(live) == 2

    # 4-byte characters: ~2 KB frames (uncompressed, as served), to fill the kernel's socket
    # buffers (a few MB on loopback) and uvicorn's write buffer; then the client's queue
    # overflows.
    text = "\U0001f600" * 480
    total = 0
    while server.hub.stats["slow_disconnects"] == 0 and total < 20_000:
        n = 200
        await chat_db.insert_messages(server.pool, [live] * n, [owner.id] * n, [text] * n)
        total += n
        # The fast client gets every message of each batch while the slow one is stuck.
        for _ in range(n):
            assert (await fast.next_of("message"))["text"] == text

    assert server.hub.stats["slow_disconnects"] == 1
    assert server.hub.clients_of(live) == 1  # only the fast client is left in the room
    await chat_db.insert_messages(server.pool, [live], [owner.id], ["after the drop"])
    assert (await fast.next_of("message"))["text"] == "after the drop"

    # The server resets the slow connection without waiting for it to read: a close frame
    # would wait behind megabytes it will never take.
    for _ in range(500):
        if len(server.server.server_state.connections) == 1:
            break
        await asyncio.sleep(0.01)
    assert len(server.server.server_state.connections) == 1  # the fast client's

    # The slow client, reading at last, gets part of what was sent, then the reset.
    received = 0
    try:
        async for frame in slow:
            if json.loads(frame)["type"] == "message":
                received += 1
    except Exception:
        pass
    assert received < total
    assert slow.close_code in (None, 1006)  # no closing handshake: the connection was reset
    sock.close()
