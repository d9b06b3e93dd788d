"""RTMP chunk stream: decoder (bytes -> messages) and encoder (message -> chunks).

Header forms (RTMP spec 5.3.1): basic header fmt(2 bits) + chunk stream id in 1, 2 or
3 bytes (ids 2..65599); message header of 11 (fmt 0), 7 (fmt 1), 3 (fmt 2) or 0 (fmt 3)
bytes; a 4-byte extended timestamp when the 24-bit field is 0xFFFFFF.

Timestamps: fmt 0 carries an absolute time, fmt 1/2 a delta; a fmt 3 header that starts
a new message reuses the last delta, and after a fmt 0 header that "delta" is the fmt 0
timestamp itself (spec 5.3.1.2.4; FFmpeg's rtmppkt.c and librtmp's RTMP_ReadPacket
both read it so). Sums wrap at 2**32.

Extended timestamp on fmt 3 chunks. Readers: FFmpeg (rtmppkt.c,
rtmp_packet_read_one_chunk) and librtmp (rtmp.c, RTMP_ReadPacket) always read the
4 bytes on a fmt 3 chunk when the previous header on that chunk stream had 0xFFFFFF.
Writers differ: FFmpeg's ff_rtmp_packet_write repeats the 4 bytes on every continuation
chunk, as does rtmpdump's librtmp since 2015 ("Add extended timestamp for Type 3
chunks"), but the librtmp fork inside OBS (plugins/obs-outputs/librtmp/rtmp.c,
RTMP_SendPacket) writes it only on the first chunk of a message. So, like SRS
(srs_protocol_stack.cpp, read_message_header) we:
- on a fmt 3 chunk that starts a new message, always read the 4 bytes (all agree);
- on a fmt 3 continuation chunk, peek at the next 4 bytes and take them as the extended
  timestamp only if they equal the value from this message's first header; otherwise
  they are payload. A payload that by chance starts with exactly those 4 bytes from an
  OBS-style writer would be misread (2**-32 per chunk, only past 4.6 hours of
  timestamps); the peek waits for 4 bytes, so byte-at-a-time feeding decides the same.

Strictness (like gortmplib): a fmt 0/1/2 header in the middle of a message on the same
chunk stream is an error, as is a new chunk stream starting with fmt 2/3. A new chunk
stream may start with fmt 1 (SRS accepts this from old librtmp writers).

Memory: the decoder keeps the unparsed input and, per chunk stream, the part of a
message received so far. A message reserves its announced length against
MAX_BUFFERED_BYTES when its first chunk is read, so a peer cannot make us hold more
than that in partial messages, however it interleaves them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, cast

from .errors import RtmpProtocolError

DEFAULT_CHUNK_SIZE: Final = 128
#: Largest chunk size accepted from the peer. The wire allows 0x7FFFFFFF, but no message
#: can exceed 0xFFFFFF bytes (24-bit length), so a larger chunk size buys nothing
#: (FFmpeg sends 4096, as our capture shows). Above this we refuse the peer. Chunk bodies
#: are consumed as they arrive, so the chunk size does not change memory use.
MAX_CHUNK_SIZE: Final = 0x1000000
#: Largest message accepted: 8 MiB holds a keyframe of a 4K stream at over 60 Mbit/s
#: with room to spare (gortmplib uses 10 MiB, nginx-rtmp 1 MiB by default).
MAX_MESSAGE_SIZE: Final = 8 * 1024 * 1024
#: Chunk streams a connection may use. Publishers use 3-6 (2 control, 3 commands,
#: 4-8 for audio, video and data); 64 is generous and keeps per-connection state small.
MAX_CHUNK_STREAMS: Final = 64
#: Total bytes reserved by partially received messages across chunk streams: two
#: messages of the largest size.
MAX_BUFFERED_BYTES: Final = 2 * MAX_MESSAGE_SIZE

MIN_CSID: Final = 2
MAX_CSID: Final = 65599
EXTENDED_TIMESTAMP: Final = 0xFFFFFF
_MASK32: Final = 0xFFFFFFFF

TYPE_SET_CHUNK_SIZE: Final = 1
TYPE_ABORT: Final = 2

_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")


@dataclass(slots=True)
class RawMessage:
    """One reassembled RTMP message."""

    csid: int
    timestamp: int
    type_id: int
    stream_id: int
    payload: bytes | bytearray  # bytearray: reassembled from chunks, handed over uncopied


class _ChunkStream:
    __slots__ = (
        "csid",
        "delta",
        "ext",
        "ext_value",
        "length",
        "partial",
        "remaining",
        "stream_id",
        "timestamp",
        "type_id",
    )

    def __init__(self, csid: int) -> None:
        self.csid = csid
        self.timestamp = 0  # of the message last started on this chunk stream
        self.delta = 0  # what a fmt 3 header starting a new message adds
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.ext = False  # the last header's timestamp field was 0xFFFFFF
        self.ext_value = 0  # the extended timestamp read with that header
        self.partial: bytearray | None = None
        self.remaining = 0  # payload bytes of the partial message still to come


def validate_chunk_size(size: int, maximum: int = MAX_CHUNK_SIZE) -> int:
    """Check a Set Chunk Size value from the peer (spec 5.4.1: 1..0x7FFFFFFF)."""
    if size & 0x80000000 or size == 0:
        raise RtmpProtocolError("bad_chunk_size", f"chunk size {size}")
    if size > maximum:
        raise RtmpProtocolError("chunk_size_too_large", f"chunk size {size} > {maximum}")
    return size


class ChunkDecoder:
    """Reassembles messages from chunk bytes. Feed with :meth:`receive_data`, pull with
    :meth:`next_message` until it returns None. Set Chunk Size and Abort messages are
    applied here, in stream order, and still returned to the caller."""

    def __init__(
        self,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_chunk_streams: int = MAX_CHUNK_STREAMS,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        max_chunk_size: int = MAX_CHUNK_SIZE,
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._max_message_size = max_message_size
        self._max_chunk_streams = max_chunk_streams
        self._max_buffered = max_buffered_bytes
        self._max_chunk_size = max_chunk_size
        # Input: bytes [_pos, _end) of _buf are received and not parsed yet. The buffer keeps
        # its size between reads (it is only compacted), so the socket can read straight
        # into its free tail (get_buffer/buffer_updated) instead of through a bytes object.
        self._buf = bytearray()
        self._pos = 0
        self._end = 0
        self._streams: dict[int, _ChunkStream] = {}
        self._reserved = 0
        self._body: _ChunkStream | None = None  # stream whose chunk body is being read
        self._body_left = 0  # bytes of that chunk body still to read

    @property
    def unparsed_bytes(self) -> int:
        """Bytes received but not yet parsed."""
        return self._end - self._pos

    @property
    def buffered_message_bytes(self) -> int:
        """Bytes reserved by partially received messages (bounded by the cap)."""
        return self._reserved

    @property
    def chunk_stream_count(self) -> int:
        return len(self._streams)

    def partial_messages(self) -> list[tuple[int, int, bytes]]:
        """Messages being received: (type id, payload bytes still to come, their first bytes
        so far, at most 8). The server uses it to wake up as soon as a keyframe is whole."""
        return [
            (st.type_id, st.remaining, bytes(st.partial[:8]))
            for st in self._streams.values()
            if st.partial is not None
        ]

    def receive_data(self, data: bytes) -> None:
        view = self.get_buffer(len(data))
        view[: len(data)] = data
        self.buffer_updated(len(data))

    def get_buffer(self, size: int) -> memoryview:
        """Room for at least ``size`` more input bytes (asyncio.BufferedProtocol): fill a
        prefix, then call :meth:`buffer_updated` with its length."""
        size = max(size, 1)
        buf = self._buf
        if self._pos:  # move the unparsed tail (at most a chunk header) to the front
            left = self._end - self._pos
            if left:
                buf[:left] = buf[self._pos : self._end]
            self._pos = 0
            self._end = left
        if len(buf) - self._end < size:
            buf.extend(bytes(size - (len(buf) - self._end)))
        return memoryview(buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes

    def set_chunk_size(self, size: int) -> None:
        self.chunk_size = validate_chunk_size(size, self._max_chunk_size)

    def abort(self, csid: int) -> None:
        """Drop the partial message on ``csid`` (Abort Message, spec 5.4.2)."""
        st = self._streams.get(csid)
        if st is not None and st.partial is not None:
            self._reserved -= st.length
            st.partial = None
            st.remaining = 0

    def next_message(self) -> RawMessage | None:
        """The next complete message, or None when more bytes are needed."""
        while True:
            step = self._read_body() if self._body_left else self._read_header()
            if step is False:
                return None
            if step is True:
                continue
            if step.type_id <= TYPE_ABORT:
                self._apply_control(step)
            return step

    def _apply_control(self, msg: RawMessage) -> None:
        if msg.type_id not in (TYPE_SET_CHUNK_SIZE, TYPE_ABORT):
            return
        if len(msg.payload) < 4:
            raise RtmpProtocolError("bad_control_message", f"type {msg.type_id} too short")
        value = _U32.unpack_from(msg.payload)[0]
        if msg.type_id == TYPE_SET_CHUNK_SIZE:
            self.set_chunk_size(value)
        else:
            self.abort(value)

    def _read_body(self) -> RawMessage | bool:
        buf = self._buf
        pos = self._pos
        end = self._end
        if pos >= end:
            return False
        # A non-zero _body_left always comes with a stream holding a partial message.
        st = cast(_ChunkStream, self._body)
        partial = cast(bytearray, st.partial)
        left = self._body_left
        # The continuation chunks of one message usually follow each other, each behind a
        # one-byte fmt 3 header: take them in this loop instead of one header/body round per
        # chunk. Anything else (another chunk stream, extended timestamps) takes the general
        # path through _read_header.
        fmt3 = 0xC0 | st.csid if st.csid < 64 and not st.ext else -1
        while True:
            n = left if left <= end - pos else end - pos
            # One copy, no intermediate slice, appended to the message's buffer; the temporary
            # view dies with the statement (CPython refcounting), so the input can be resized
            # on the next read.
            partial += memoryview(buf)[pos : pos + n]
            pos += n
            left -= n
            st.remaining -= n
            if left or not st.remaining or pos >= end or buf[pos] != fmt3:
                break
            pos += 1
            left = st.remaining if st.remaining <= self.chunk_size else self.chunk_size
        self._pos = pos
        self._body_left = left
        if st.remaining:
            return True
        self._body = None
        st.partial = None
        self._reserved -= st.length
        # The message owns its buffer now: handed over without a copy.
        return RawMessage(st.csid, st.timestamp, st.type_id, st.stream_id, partial)

    def _read_header(self) -> RawMessage | bool:
        buf = self._buf
        pos = self._pos
        end = self._end
        if pos >= end:
            return False
        b0 = buf[pos]
        fmt = b0 >> 6
        csid = b0 & 0x3F
        p = pos + 1
        if csid == 0:
            if end - p < 1:
                return False
            csid = buf[p] + 64
            p += 1
        elif csid == 1:
            if end - p < 2:
                return False
            csid = buf[p] + (buf[p + 1] << 8) + 64
            p += 2

        st = self._streams.get(csid)
        if st is None:
            if fmt >= 2:
                raise RtmpProtocolError(
                    "bad_chunk_header", f"chunk stream {csid} starts with a fmt {fmt} header"
                )
            if len(self._streams) >= self._max_chunk_streams:
                raise RtmpProtocolError("too_many_chunk_streams", f"over {self._max_chunk_streams}")
        elif st.partial is not None and fmt != 3:
            raise RtmpProtocolError(
                "unexpected_chunk_header", f"fmt {fmt} inside a message on chunk stream {csid}"
            )

        if fmt == 3:
            if st is None:  # unreachable: checked above, kept for the type checker
                raise RtmpProtocolError("bad_chunk_header", "fmt 3 on a new chunk stream")
            if st.partial is not None:
                # Continuation chunk: the extended timestamp may or may not be repeated.
                if st.ext:
                    if end - p < 4:
                        return False
                    if _U32.unpack_from(buf, p)[0] == st.ext_value:
                        p += 4
                self._pos = p
                self._body = st
                self._body_left = min(st.remaining, self.chunk_size)
                return True
            if st.ext:
                if end - p < 4:
                    return False
                st.ext_value = st.delta = _U32.unpack_from(buf, p)[0]
                p += 4
            st.timestamp = (st.timestamp + st.delta) & _MASK32
        else:
            hlen = (11, 7, 3)[fmt]
            if end - p < hlen:
                return False
            field = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
            length = -1
            if fmt <= 1:
                length = (buf[p + 3] << 16) | (buf[p + 4] << 8) | buf[p + 5]
                if length > self._max_message_size:
                    raise RtmpProtocolError(
                        "message_too_large", f"{length} bytes > {self._max_message_size}"
                    )
            ext = field == EXTENDED_TIMESTAMP
            if ext:
                if end - p < hlen + 4:
                    return False
                field = _U32.unpack_from(buf, p + hlen)[0]
            if st is None:
                st = self._streams[csid] = _ChunkStream(csid)
            if fmt <= 1:
                st.length = length
                st.type_id = buf[p + 6]
            if fmt == 0:
                st.stream_id = _U32LE.unpack_from(buf, p + 7)[0]
                st.timestamp = field
            else:
                st.timestamp = (st.timestamp + field) & _MASK32
            st.delta = field
            st.ext = ext
            st.ext_value = field
            p += hlen + 4 if ext else hlen

        # A new message starts here.
        length = st.length
        if length == 0:
            self._pos = p
            return RawMessage(csid, st.timestamp, st.type_id, st.stream_id, b"")
        n = length if length <= self.chunk_size else self.chunk_size
        if n == length and end - p >= n:
            # Fast path: the whole message is in this chunk and already buffered.
            self._pos = p + n
            payload = bytes(memoryview(buf)[p : p + n])
            return RawMessage(csid, st.timestamp, st.type_id, st.stream_id, payload)
        if csid < 64 and not st.ext and end - p >= length + (length - 1) // n:
            # Second fast path: every chunk of the message may be buffered already (one
            # read usually holds several frames). Gathered in one copy when they follow each
            # other behind one-byte fmt 3 headers.
            gathered = self._gather(p, length, n, 0xC0 | csid)
            if gathered is not None:
                return RawMessage(csid, st.timestamp, st.type_id, st.stream_id, gathered)
        if self._reserved + length > self._max_buffered:
            raise RtmpProtocolError(
                "too_much_buffered", f"{self._reserved} + {length} > {self._max_buffered}"
            )
        self._reserved += length
        # Grows as its bytes arrive (not allocated at its announced length): a peer that
        # announces big messages and stops makes us hold only what it sent.
        st.partial = bytearray()
        st.remaining = length
        self._pos = p
        self._body = st
        self._body_left = n
        return True

    def _gather(self, p: int, length: int, size: int, fmt3: int) -> bytes | None:
        """The message whose body starts at ``p``, from its buffered chunks; None (nothing
        consumed) when another header interrupts them."""
        buf = self._buf
        view = memoryview(buf)
        parts = [view[p : p + size]]
        q = p + size
        left = length - size
        while left:
            if buf[q] != fmt3:
                return None  # interleaved with another chunk stream: the general path
            n = left if left < size else size
            parts.append(view[q + 1 : q + 1 + n])
            q += 1 + n
            left -= n
        self._pos = q
        return b"".join(parts)  # the views die with this frame: the buffer stays resizable


def _basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes((fmt << 6 | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    return bytes((fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))


class _OutStream:
    __slots__ = ("delta", "length", "stream_id", "timestamp", "type_id")

    def __init__(self, timestamp: int, delta: int, length: int, type_id: int, stream_id: int):
        self.timestamp = timestamp
        self.delta = delta
        self.length = length
        self.type_id = type_id
        self.stream_id = stream_id


class ChunkEncoder:
    """Splits messages into chunks of the current outbound chunk size.

    ``compress=False`` (the server's default) writes a fmt 0 header for every message:
    simplest for every reader, and the server sends few messages. ``compress=True``
    chooses fmt 1/2/3 like FFmpeg's writer (tests and the client use it).
    ``repeat_extended=False`` omits the extended timestamp on continuation chunks, as
    OBS's librtmp does.
    """

    def __init__(
        self,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        compress: bool = False,
        repeat_extended: bool = True,
    ) -> None:
        self.chunk_size = chunk_size
        self._compress = compress
        self._repeat_extended = repeat_extended
        self._prev: dict[int, _OutStream] = {}

    def set_chunk_size(self, size: int) -> None:
        """Use after encoding the Set Chunk Size message that announces ``size``."""
        if not 1 <= size <= 0x7FFFFFFF:
            raise ValueError(f"chunk size {size} out of range")
        self.chunk_size = size

    def encode(
        self, csid: int, timestamp: int, type_id: int, stream_id: int, payload: bytes
    ) -> bytes:
        if not MIN_CSID <= csid <= MAX_CSID:
            raise ValueError(f"chunk stream id {csid} out of range")
        length = len(payload)
        if length > 0xFFFFFF:
            raise ValueError(f"message of {length} bytes does not fit 24 bits")
        timestamp &= _MASK32
        prev = self._prev.get(csid)
        fmt = 0
        value = timestamp  # what the header's timestamp field stands for
        if (
            self._compress
            and prev is not None
            and prev.stream_id == stream_id
            and timestamp >= prev.timestamp
        ):
            value = timestamp - prev.timestamp
            if prev.type_id == type_id and prev.length == length:
                fmt = 3 if value == prev.delta else 2
            else:
                fmt = 1
        ext = value >= EXTENDED_TIMESTAMP
        field = EXTENDED_TIMESTAMP if ext else value
        parts: list[bytes | memoryview] = [_basic_header(fmt, csid)]
        if fmt <= 2:
            hdr = field.to_bytes(3, "big")
            if fmt <= 1:
                hdr += length.to_bytes(3, "big") + bytes((type_id,))
            if fmt == 0:
                hdr += _U32LE.pack(stream_id)
            parts.append(hdr)
        ext_bytes = _U32.pack(value) if ext else b""
        parts.append(ext_bytes)
        # For fmt 3 value == prev.delta, so the delta a reader keeps is always value.
        self._prev[csid] = _OutStream(timestamp, value, length, type_id, stream_id)
        view = memoryview(payload)
        size = self.chunk_size
        parts.append(view[:size])
        if length > size:
            cont = _basic_header(3, csid) + (ext_bytes if self._repeat_extended else b"")
            for off in range(size, length, size):
                parts.append(cont)
                parts.append(view[off : off + size])
        return b"".join(parts)
