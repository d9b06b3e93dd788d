"""Shared helpers for the RTMP tests: an in-memory client/server pair driven like the
asyncio glue drives a real connection."""

from __future__ import annotations

import random
from collections.abc import Callable

from ingest.rtmp import (
    ConnectionClosed,
    ConnectRequest,
    Event,
    PublishRequest,
    RtmpProtocolError,
    RtmpServerConnection,
)
from ingest.rtmp.client import RtmpClient
from tests.helpers import REPO

DATA_DIR = REPO / "tests" / "data" / "rtmp"
CAPTURE = DATA_DIR / "ffmpeg_publish_h264_aac.bin"


def seeded(seed: int = 0) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def answer(conn: RtmpServerConnection, event: Event, *, accept: bool = True) -> None:
    """What a permissive glue does: accept connect and publish."""
    if not accept:
        return
    if isinstance(event, ConnectRequest):
        conn.accept_connect()
    elif isinstance(event, PublishRequest):
        conn.accept_publish(event.stream_id)


def drain(conn: RtmpServerConnection, *, accept: bool = True) -> list[Event]:
    events: list[Event] = []
    while (event := conn.next_event()) is not None:
        events.append(event)
        answer(conn, event, accept=accept)
        if isinstance(event, ConnectionClosed):
            break
    return events


def feed(
    conn: RtmpServerConnection, data: bytes, *, step: int = 0, accept: bool = True
) -> list[Event]:
    """Feed ``data`` whole (step=0) or ``step`` bytes at a time, draining events after
    every piece as the glue does."""
    if not step:
        conn.receive_data(data)
        return drain(conn, accept=accept)
    events: list[Event] = []
    for i in range(0, len(data), step):
        conn.receive_data(data[i : i + step])
        events += drain(conn, accept=accept)
    return events


def feed_until_error(
    conn: RtmpServerConnection, data: bytes, *, step: int = 0
) -> tuple[list[Event], str | None]:
    """Like feed, but returns (events so far, error reason or None)."""
    events: list[Event] = []
    pieces = [data] if not step else [data[i : i + step] for i in range(0, len(data), step)]
    try:
        for piece in pieces:
            conn.receive_data(piece)
            while (event := conn.next_event()) is not None:
                events.append(event)
                answer(conn, event)
    except RtmpProtocolError as exc:
        return events, exc.reason
    return events, None


class Pair:
    """A server connection and a client exchanging bytes in memory."""

    def __init__(self, *, digest: bool = True, compress: bool = True, accept: bool = True):
        self.server = RtmpServerConnection(random_bytes=seeded(1), epoch=7)
        self.client = RtmpClient(random_bytes=seeded(2), digest=digest, compress=compress)
        self.accept = accept

    def pump(self) -> list[Event]:
        """Client bytes to the server, events drained, server bytes back to the client."""
        events = feed(self.server, self.client.data_to_send(), accept=self.accept)
        self.client.receive_data(self.server.data_to_send())
        return events

    def handshake(self) -> None:
        self.pump()
        self.pump()  # C2

    def publishing(self, name: str = "key") -> int:
        """Handshake, connect, createStream, publish; returns the stream id."""
        self.handshake()
        self.client.connect("live")
        self.pump()
        self.client.publish_sequence(name)
        self.pump()
        self.client.publish(1, name)
        self.pump()
        self.client.messages()
        return 1
