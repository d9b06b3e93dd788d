"""uvicorn's sans-IO WebSocket protocol, plus one ASGI extension for chat fan-out.

A chat event goes to thousands of sockets as the same bytes: a server frame is never masked
and streamd negotiates no compression, so the frame can be serialised once per event and
written as is. uvicorn's ``send`` builds and serialises a frame per socket (and awaits a
coroutine for it): about a third of a delivery's CPU in a profile of bench/chat_fanout.py,
where the write(2) itself is most of the rest.

The extension ``scope["extensions"]["streamd.write_frame"]`` is a plain function taking one
serialised frame: it writes it and returns True when the connection is open and the transport
is below its high-water mark, else returns False and writes nothing; the caller then uses the
ordinary ``send`` (which waits for the buffer to drain or raises on a closed socket). Frames
are whole, so they never split one of the protocol's own frames (pings, close).

``scope["extensions"]["streamd.abort"]`` drops the connection at once, discarding what is
buffered: for a client dropped for not reading, whose full buffers a graceful close would wait
on for as long as the peer keeps its TCP window shut.

Both reach into uvicorn's protocol object (the attributes in :data:`UPSTREAM_ATTRIBUTES`), which
is not a public API: pyproject pins uvicorn to the releases this was tested with, and each
connection checks those attributes once it is set up. When one is missing (a rename upstream),
the extensions are not offered, so chat falls back to the ordinary ``send`` path, slower but
correct, and a warning says so once per process.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

log = logging.getLogger(__name__)

WRITE_FRAME = "streamd.write_frame"
ABORT = "streamd.abort"

# What write_frame and the abort extension read of uvicorn's WebSocketsSansIOProtocol.
UPSTREAM_ATTRIBUTES = (
    "close_sent", "disconnected", "handshake_initiated", "handshake_complete", "initial_response",
    "writable", "conn", "transport", "scope",
)  # fmt: skip


def missing_attributes(protocol: object) -> list[str]:
    return [name for name in UPSTREAM_ATTRIBUTES if not hasattr(protocol, name)]


class FrameWritingProtocol(WebSocketsSansIOProtocol):
    _warned = False  # one warning per process, not per connection

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        missing = missing_attributes(self)
        if missing:
            if not FrameWritingProtocol._warned:
                FrameWritingProtocol._warned = True
                log.warning(
                    "uvicorn's WebSocket protocol lacks %s: chat uses the plain send path "
                    "(slower fan-out); streamd was tested with the uvicorn pyproject.toml names",
                    ", ".join(missing),
                )
            return
        if self.handshake_initiated and not self.close_sent:  # the upgrade was not refused
            # ASGI types extensions as dicts; this one is a function (web.chat reads it).
            extensions = cast(dict[str, Any], self.scope.get("extensions"))
            if extensions is not None:
                extensions[WRITE_FRAME] = self.write_frame
                extensions[ABORT] = self.transport.abort

    def write_frame(self, frame: bytes) -> bool:
        conn: ServerProtocol = self.conn
        if (
            self.close_sent
            or self.disconnected
            or not self.handshake_complete
            or self.initial_response is not None
            or not self.writable.is_set()
            or conn.state is not State.OPEN
            or conn.extensions  # a negotiated extension (deflate) transforms each frame
        ):
            return False
        self.transport.write(frame)
        return True
