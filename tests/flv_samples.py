"""A tiny FLV file reader for the tests: it walks the container so the real tag payloads
that ffmpeg wrote (tests/data/flv, see generate.py there) can be fed to the payload and codec
parsers, exactly as the RTMP layer feeds message bodies. Not for production: ingest never
reads FLV files, and this reader trusts its input.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data" / "flv"

TAG_AUDIO = 8
TAG_VIDEO = 9
TAG_SCRIPT = 18


@dataclass(frozen=True)
class FlvTag:
    tag_type: int
    timestamp: int
    payload: bytes


@functools.cache
def read_flv(name: str) -> tuple[FlvTag, ...]:
    """Tags of tests/data/flv/<name>: header (9 bytes) + PreviousTagSize0, then per tag an
    11-byte header (type, UI24 size, UI24 timestamp + UI8 extension, UI24 stream id), the
    payload and a UI32 PreviousTagSize (checked, to catch a wrong walk)."""
    data = (DATA_DIR / name).read_bytes()
    assert data[:3] == b"FLV" and data[3] == 1, "not an FLV v1 file"
    offset = int.from_bytes(data[5:9], "big")
    assert int.from_bytes(data[offset : offset + 4], "big") == 0
    offset += 4
    tags = []
    while offset < len(data):
        header = data[offset : offset + 11]
        assert len(header) == 11, "truncated tag header"
        size = int.from_bytes(header[1:4], "big")
        timestamp = int.from_bytes(header[4:7], "big") | header[7] << 24
        assert header[8:11] == b"\x00\x00\x00", "stream id is always 0"
        payload = data[offset + 11 : offset + 11 + size]
        assert len(payload) == size, "truncated tag payload"
        previous = data[offset + 11 + size : offset + 15 + size]
        assert int.from_bytes(previous, "big") == 11 + size, "PreviousTagSize mismatch"
        tags.append(FlvTag(header[0] & 0x1F, timestamp, payload))
        offset += 15 + size
    return tuple(tags)


SAMPLES = tuple(sorted(path.name for path in DATA_DIR.glob("*.flv")))
