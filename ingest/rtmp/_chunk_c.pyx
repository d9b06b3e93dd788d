# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of :class:`ingest.rtmp.chunk.ChunkDecoder`: same API, messages and errors.

``chunk.py`` is the reference and the documentation of the rules (header forms, extended
timestamps on continuation chunks, strictness, memory caps); this file follows it line for
line, with C integers and ``memcpy`` where the Python one indexes a bytearray. It exists
because the chunk layer runs for every message of every publisher: in the ingest benchmark it
was the largest single share of the server's CPU. ``ingest.rtmp.speedups`` picks this class
when it was compiled; ``tests/ingest/rtmp`` runs the chunk tests and a differential fuzz
test against both.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t
from libc.string cimport memcpy, memmove

from ingest.rtmp.chunk import (
    DEFAULT_CHUNK_SIZE,
    MAX_BUFFERED_BYTES,
    MAX_CHUNK_SIZE,
    MAX_CHUNK_STREAMS,
    MAX_MESSAGE_SIZE,
    RawMessage,
    validate_chunk_size,
)
from ingest.rtmp.errors import RtmpProtocolError

cdef enum:
    EXTENDED_TIMESTAMP = 0xFFFFFF
    TYPE_SET_CHUNK_SIZE = 1
    TYPE_ABORT = 2

cdef object _NEED_MORE = False  # "more bytes needed": next_message returns None
cdef object _PROGRESS = True  # something was consumed, no message yet: go on


cdef object _new = object.__new__
cdef object _RAW_MESSAGE = RawMessage


cdef inline object _message(int csid, uint32_t timestamp, int type_id, uint32_t stream_id, payload):
    # RawMessage(...) without running the dataclass's Python __init__ (one per message): its
    # fields are slots, set directly.
    msg = _new(_RAW_MESSAGE)
    msg.csid = csid
    msg.timestamp = timestamp
    msg.type_id = type_id
    msg.stream_id = stream_id
    msg.payload = payload
    return msg


cdef inline uint32_t _u32be(const uint8_t* p) noexcept:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint32_t _u32le(const uint8_t* p) noexcept:
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]


cdef class _ChunkStream:
    cdef int csid
    cdef uint32_t timestamp  # of the message last started on this chunk stream
    cdef uint32_t delta  # what a fmt 3 header starting a new message adds
    cdef Py_ssize_t length
    cdef int type_id
    cdef uint32_t stream_id
    cdef bint ext  # the last header's timestamp field was 0xFFFFFF
    cdef uint32_t ext_value  # the extended timestamp read with that header
    cdef bytearray partial  # None unless a message is being received
    cdef Py_ssize_t remaining  # payload bytes of the partial message still to come

    def __cinit__(self, int csid):
        self.csid = csid


cdef class ChunkDecoder:
    """See :class:`ingest.rtmp.chunk.ChunkDecoder`."""

    cdef public Py_ssize_t chunk_size
    cdef Py_ssize_t _max_message_size
    cdef Py_ssize_t _max_chunk_streams
    cdef Py_ssize_t _max_buffered
    cdef Py_ssize_t _max_chunk_size
    cdef bytearray _buf
    cdef Py_ssize_t _pos
    cdef Py_ssize_t _end
    cdef dict _streams
    cdef Py_ssize_t _reserved
    cdef _ChunkStream _body
    cdef Py_ssize_t _body_left
    cdef int _type  # type id of the message a step just returned

    def __init__(
        self,
        *,
        Py_ssize_t max_message_size=MAX_MESSAGE_SIZE,
        Py_ssize_t max_chunk_streams=MAX_CHUNK_STREAMS,
        Py_ssize_t max_buffered_bytes=MAX_BUFFERED_BYTES,
        Py_ssize_t max_chunk_size=MAX_CHUNK_SIZE,
    ):
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._max_message_size = max_message_size
        self._max_chunk_streams = max_chunk_streams
        self._max_buffered = max_buffered_bytes
        self._max_chunk_size = max_chunk_size
        self._buf = bytearray()
        self._pos = 0
        self._end = 0
        self._streams = {}
        self._reserved = 0
        self._body = None
        self._body_left = 0

    @property
    def unparsed_bytes(self):
        return self._end - self._pos

    @property
    def buffered_message_bytes(self):
        return self._reserved

    @property
    def chunk_stream_count(self):
        return len(self._streams)

    def partial_messages(self):
        cdef _ChunkStream st
        return [
            (st.type_id, st.remaining, bytes(st.partial[:8]))
            for st in self._streams.values()
            if st.partial is not None
        ]

    def receive_data(self, data):
        cdef Py_ssize_t n = len(data)
        view = self.get_buffer(n)
        view[:n] = data
        del view
        self.buffer_updated(n)

    def get_buffer(self, Py_ssize_t size):
        cdef Py_ssize_t left
        cdef char* buf
        if size < 1:
            size = 1
        if self._pos:  # move the unparsed tail to the front (no resize: allowed while exported)
            left = self._end - self._pos
            if left:
                buf = PyByteArray_AS_STRING(self._buf)
                memmove(buf, buf + self._pos, left)
            self._pos = 0
            self._end = left
        if PyByteArray_GET_SIZE(self._buf) - self._end < size:
            PyByteArray_Resize(self._buf, self._end + size)
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, Py_ssize_t nbytes):
        self._end += nbytes

    def set_chunk_size(self, size):
        self.chunk_size = validate_chunk_size(size, self._max_chunk_size)

    def abort(self, csid):
        cdef _ChunkStream st = self._streams.get(csid)
        if st is not None and st.partial is not None:
            self._reserved -= st.length
            st.partial = None
            st.remaining = 0

    def next_message(self):
        cdef object step
        while True:
            step = self._read_body() if self._body_left else self._read_header()
            if step is _NEED_MORE:
                return None
            if step is _PROGRESS:
                continue
            if self._type <= TYPE_ABORT:
                self._apply_control(step)
            return step

    cdef _apply_control(self, msg):
        if self._type != TYPE_SET_CHUNK_SIZE and self._type != TYPE_ABORT:
            return
        payload = msg.payload
        if len(payload) < 4:
            raise RtmpProtocolError("bad_control_message", f"type {self._type} too short")
        value = int.from_bytes(payload[:4], "big")
        if self._type == TYPE_SET_CHUNK_SIZE:
            self.set_chunk_size(value)
        else:
            self.abort(value)

    cdef object _read_body(self):
        cdef Py_ssize_t pos = self._pos
        cdef Py_ssize_t end = self._end
        cdef Py_ssize_t left, n, old
        cdef int fmt3
        if pos >= end:
            return _NEED_MORE
        cdef const uint8_t* buf = <const uint8_t*>PyByteArray_AS_STRING(self._buf)
        cdef _ChunkStream st = self._body
        cdef bytearray partial = st.partial
        left = self._body_left
        fmt3 = (0xC0 | st.csid) if st.csid < 64 and not st.ext else -1
        while True:
            n = left if left <= end - pos else end - pos
            old = PyByteArray_GET_SIZE(partial)
            PyByteArray_Resize(partial, old + n)
            memcpy(PyByteArray_AS_STRING(partial) + old, buf + pos, n)
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
            return _PROGRESS
        self._body = None
        st.partial = None
        self._reserved -= st.length
        self._type = st.type_id
        return _message(st.csid, st.timestamp, st.type_id, st.stream_id, partial)

    cdef object _read_header(self):
        cdef Py_ssize_t pos = self._pos
        cdef Py_ssize_t end = self._end
        if pos >= end:
            return _NEED_MORE
        cdef const uint8_t* buf = <const uint8_t*>PyByteArray_AS_STRING(self._buf)
        cdef int b0 = buf[pos]
        cdef int fmt = b0 >> 6
        cdef int csid = b0 & 0x3F
        cdef Py_ssize_t p = pos + 1
        cdef Py_ssize_t hlen, length, n
        cdef uint32_t field
        cdef bint ext
        cdef _ChunkStream st
        if csid == 0:
            if end - p < 1:
                return _NEED_MORE
            csid = buf[p] + 64
            p += 1
        elif csid == 1:
            if end - p < 2:
                return _NEED_MORE
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
            if st.partial is not None:
                # Continuation chunk: the extended timestamp may or may not be repeated.
                if st.ext:
                    if end - p < 4:
                        return _NEED_MORE
                    if _u32be(buf + p) == st.ext_value:
                        p += 4
                self._pos = p
                self._body = st
                self._body_left = st.remaining if st.remaining <= self.chunk_size else self.chunk_size
                return _PROGRESS
            if st.ext:
                if end - p < 4:
                    return _NEED_MORE
                st.ext_value = st.delta = _u32be(buf + p)
                p += 4
            st.timestamp = st.timestamp + st.delta  # uint32_t: wraps at 2**32
        else:
            hlen = 11 if fmt == 0 else (7 if fmt == 1 else 3)
            if end - p < hlen:
                return _NEED_MORE
            field = (<uint32_t>buf[p] << 16) | (<uint32_t>buf[p + 1] << 8) | buf[p + 2]
            length = -1
            if fmt <= 1:
                length = (<Py_ssize_t>buf[p + 3] << 16) | (<Py_ssize_t>buf[p + 4] << 8) | buf[p + 5]
                if length > self._max_message_size:
                    raise RtmpProtocolError(
                        "message_too_large", f"{length} bytes > {self._max_message_size}"
                    )
            ext = field == EXTENDED_TIMESTAMP
            if ext:
                if end - p < hlen + 4:
                    return _NEED_MORE
                field = _u32be(buf + p + hlen)
            if st is None:
                st = _ChunkStream(csid)
                self._streams[csid] = st
            if fmt <= 1:
                st.length = length
                st.type_id = buf[p + 6]
            if fmt == 0:
                st.stream_id = _u32le(buf + p + 7)
                st.timestamp = field
            else:
                st.timestamp = st.timestamp + field
            st.delta = field
            st.ext = ext
            st.ext_value = field
            p += hlen + 4 if ext else hlen

        # A new message starts here.
        length = st.length
        self._type = st.type_id
        if length == 0:
            self._pos = p
            return _message(csid, st.timestamp, st.type_id, st.stream_id, b"")
        n = length if length <= self.chunk_size else self.chunk_size
        if n == length and end - p >= n:
            # Fast path: the whole message is in this chunk and already buffered.
            self._pos = p + n
            payload = PyBytes_FromStringAndSize(<const char*>buf + p, n)
            return _message(csid, st.timestamp, st.type_id, st.stream_id, payload)
        if csid < 64 and not st.ext and end - p >= length + (length - 1) // n:
            # Every chunk of the message may be buffered already: gathered in one copy when
            # they follow each other behind one-byte fmt 3 headers.
            gathered = self._gather(buf, p, length, n, 0xC0 | csid)
            if gathered is not None:
                return _message(csid, st.timestamp, st.type_id, st.stream_id, gathered)
        if self._reserved + length > self._max_buffered:
            raise RtmpProtocolError(
                "too_much_buffered", f"{self._reserved} + {length} > {self._max_buffered}"
            )
        self._reserved += length
        # Grows as its bytes arrive (not allocated at its announced length).
        st.partial = bytearray()
        st.remaining = length
        self._pos = p
        self._body = st
        self._body_left = n
        return _PROGRESS

    cdef object _gather(
        self, const uint8_t* buf, Py_ssize_t p, Py_ssize_t length, Py_ssize_t size, int fmt3
    ):
        cdef Py_ssize_t q = p + size
        cdef Py_ssize_t left = length - size
        cdef Py_ssize_t n
        while left:  # every continuation header must be ours before anything is copied
            if buf[q] != fmt3:
                return None  # interleaved with another chunk stream: the general path
            n = left if left < size else size
            q += 1 + n
            left -= n
        out = PyBytes_FromStringAndSize(NULL, length)
        cdef char* dst = PyBytes_AS_STRING(out)
        memcpy(dst, buf + p, size)
        dst += size
        q = p + size
        left = length - size
        while left:
            n = left if left < size else size
            memcpy(dst, buf + q + 1, n)
            dst += n
            q += 1 + n
            left -= n
        self._pos = q
        return out
