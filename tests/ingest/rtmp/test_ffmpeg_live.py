"""A real ffmpeg (the imageio-ffmpeg binary) against a tiny asyncio server around
RtmpServerConnection: one publish, and one play whose handshake FFmpeg verifies."""

from __future__ import annotations

import asyncio
import random

import imageio_ffmpeg

from ingest.rtmp import (
    AudioMessage,
    ConnectionClosed,
    ConnectRequest,
    Event,
    HandshakeComplete,
    PublishRequest,
    RtmpProtocolError,
    RtmpServerConnection,
    VideoMessage,
)

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


class Server:
    """Accepts one connection; ``stop_after`` ends it once an event of that type came."""

    def __init__(self, stop_after: type[Event] | None = None) -> None:
        self.events: list[Event] = []
        self.done = asyncio.Event()
        self.stop_after = stop_after
        self.conn: RtmpServerConnection | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self.conn = RtmpServerConnection(random_bytes=random.Random(7).randbytes)
        try:
            while not self.done.is_set():
                data = await reader.read(65536)
                conn.receive_data(data)
                while (event := conn.next_event()) is not None:
                    self.events.append(event)
                    if isinstance(event, ConnectRequest):
                        conn.accept_connect()
                    elif isinstance(event, PublishRequest):
                        conn.accept_publish(event.stream_id)
                    if isinstance(event, ConnectionClosed) or (
                        self.stop_after and isinstance(event, self.stop_after)
                    ):
                        self.done.set()
                        break
                writer.write(conn.data_to_send())
                await writer.drain()
        except RtmpProtocolError:
            writer.write(conn.data_to_send())
            raise
        finally:
            writer.close()
            self.done.set()


async def run_ffmpeg(server: Server, *args: str) -> tuple[int, bytes]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    argv = [a.replace("PORT", str(port)) for a in args]
    proc = await asyncio.create_subprocess_exec(
        FFMPEG,
        "-hide_banner",
        "-loglevel",
        "error",
        *argv,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), 8)
        await asyncio.wait_for(server.done.wait(), 2)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        listener.close()
        await listener.wait_closed()
    return proc.returncode or 0, stderr


async def test_ffmpeg_publishes() -> None:
    server = Server()
    code, stderr = await run_ffmpeg(
        server,
        *("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25"),
        *("-f", "lavfi", "-i", "sine"),
        *("-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", "-c:a", "aac", "-t", "1"),
        *("-f", "flv", "rtmp://127.0.0.1:PORT/live/livekey?token=t1"),
    )
    assert code == 0, stderr.decode(errors="replace")
    events = server.events
    assert events[0] == HandshakeComplete(digest=True)
    publish = next(e for e in events if isinstance(e, PublishRequest))
    assert (publish.name, publish.query) == ("livekey", "token=t1")
    video = [e for e in events if isinstance(e, VideoMessage)]
    audio = [e for e in events if isinstance(e, AudioMessage)]
    assert len(video) >= 20
    assert len(audio) >= 20
    assert video[0].payload[:2] == b"\x17\x00"
    assert isinstance(events[-1], ConnectionClosed)
    assert server.conn is not None
    assert server.conn.dropped_messages == 0


async def test_ffmpeg_player_accepts_our_digest_handshake() -> None:
    """FFmpeg checks the S1 digest and the S2 signature when it plays (rtmpproto.c,
    rtmp_handshake with is_input); it sends connect only if both are right."""
    server = Server(stop_after=ConnectRequest)
    await run_ffmpeg(server, "-i", "rtmp://127.0.0.1:PORT/live/watch", "-f", "null", "-")
    assert server.events[0] == HandshakeComplete(digest=True)
    assert isinstance(server.events[1], ConnectRequest)
    assert server.events[1].app == "live"
