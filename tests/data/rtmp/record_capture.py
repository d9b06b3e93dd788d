"""Record the bytes a real FFmpeg publisher sends, for the replay test.

Run from the repository root:  .venv/bin/python tests/data/rtmp/record_capture.py

It starts an asyncio TCP server on 127.0.0.1 driven by RtmpServerConnection (so the
handshake, connect and publish succeed), runs the ffmpeg binary from imageio-ffmpeg
publishing 1.5 s of H.264 + AAC test signal, and writes every byte received from the
client to ffmpeg_publish_h264_aac.bin beside this script. The server's randomness is
seeded, so its replies depend only on what ffmpeg sends.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

import imageio_ffmpeg

from ingest.rtmp import ConnectionClosed, ConnectRequest, PublishRequest, RtmpServerConnection

OUTPUT = Path(__file__).with_name("ffmpeg_publish_h264_aac.bin")


def ffmpeg_publish_args(url: str) -> list[str]:
    return [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "30",
        "-bf",
        "2",
        "-c:a",
        "aac",
        "-t",
        "1.5",
        "-f",
        "flv",
        url,
    ]


async def record() -> bytes:
    captured = bytearray()
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RtmpServerConnection(random_bytes=random.Random(0).randbytes)
        try:
            while True:
                data = await reader.read(65536)
                captured.extend(data)
                conn.receive_data(data)
                while (event := conn.next_event()) is not None:
                    if isinstance(event, ConnectRequest):
                        conn.accept_connect()
                    elif isinstance(event, PublishRequest):
                        conn.accept_publish(event.stream_id)
                    elif isinstance(event, ConnectionClosed):
                        return
                writer.write(conn.data_to_send())
                await writer.drain()
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        *ffmpeg_publish_args(f"rtmp://127.0.0.1:{port}/live/testkey")
    )
    if await proc.wait() != 0:
        raise SystemExit(f"ffmpeg exited with {proc.returncode}")
    await asyncio.wait_for(done.wait(), 10)
    server.close()
    await server.wait_closed()
    return bytes(captured)


def main() -> None:
    data = asyncio.run(record())
    OUTPUT.write_bytes(data)
    print(f"wrote {len(data)} bytes to {OUTPUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
