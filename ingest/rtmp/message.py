"""RTMP message bodies (spec sections 5.4, 6.2, 7.1) as dataclasses.

Each has ``TYPE_ID``, ``parse(payload)`` raising :class:`RtmpProtocolError` on a bad
body, and ``__bytes__`` giving the body back. Audio (8) and video (9) bodies are not
parsed here: they leave the RTMP layer as raw FLV tag payloads (``ingest.flv`` reads
them). AMF3 bodies (15, 17) are refused: FFmpeg and OBS send AMF0 only.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import ClassVar, Final, Self

from . import amf0
from .amf0 import AmfValue
from .errors import RtmpProtocolError

#: Largest command or data (AMF0) message body we decode. Publishers send a few hundred
#: bytes (connect, publish, onMetaData); media never travels in these.
MAX_AMF_MESSAGE_SIZE: Final = 256 * 1024


class MessageType(enum.IntEnum):
    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACKNOWLEDGEMENT = 3
    USER_CONTROL = 4
    WINDOW_ACK_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    DATA_AMF3 = 15
    SHARED_OBJECT_AMF3 = 16
    COMMAND_AMF3 = 17
    DATA_AMF0 = 18
    SHARED_OBJECT_AMF0 = 19
    COMMAND_AMF0 = 20
    AGGREGATE = 22


class UserControlEvent(enum.IntEnum):
    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


class PeerBandwidthLimit(enum.IntEnum):
    HARD = 0
    SOFT = 1
    DYNAMIC = 2


_KNOWN_EVENTS = frozenset(int(e) for e in UserControlEvent)
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_EVENT = struct.Struct(">HI")
_EVENT_BUFFER = struct.Struct(">HII")
_PEER_BW = struct.Struct(">IB")


def _u32_body(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise RtmpProtocolError("bad_control_message", f"{what} body of {len(payload)} bytes")
    return int(_U32.unpack_from(payload)[0])


@dataclass(frozen=True, slots=True)
class SetChunkSize:
    size: int
    TYPE_ID: ClassVar[int] = MessageType.SET_CHUNK_SIZE

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        return cls(_u32_body(payload, "Set Chunk Size") & 0x7FFFFFFF)

    def __bytes__(self) -> bytes:
        return _U32.pack(self.size & 0x7FFFFFFF)


@dataclass(frozen=True, slots=True)
class AbortMessage:
    csid: int
    TYPE_ID: ClassVar[int] = MessageType.ABORT

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        return cls(_u32_body(payload, "Abort"))

    def __bytes__(self) -> bytes:
        return _U32.pack(self.csid)


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    sequence_number: int
    TYPE_ID: ClassVar[int] = MessageType.ACKNOWLEDGEMENT

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        return cls(_u32_body(payload, "Acknowledgement"))

    def __bytes__(self) -> bytes:
        return _U32.pack(self.sequence_number & 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class WindowAckSize:
    size: int
    TYPE_ID: ClassVar[int] = MessageType.WINDOW_ACK_SIZE

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        return cls(_u32_body(payload, "Window Acknowledgement Size"))

    def __bytes__(self) -> bytes:
        return _U32.pack(self.size)


@dataclass(frozen=True, slots=True)
class SetPeerBandwidth:
    size: int
    limit_type: int = PeerBandwidthLimit.DYNAMIC
    TYPE_ID: ClassVar[int] = MessageType.SET_PEER_BANDWIDTH

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        if len(payload) < 5:
            raise RtmpProtocolError("bad_control_message", "Set Peer Bandwidth too short")
        size, limit = _PEER_BW.unpack_from(payload)
        return cls(size, limit)

    def __bytes__(self) -> bytes:
        return _PEER_BW.pack(self.size, self.limit_type)


@dataclass(frozen=True, slots=True)
class UserControl:
    """User Control Message (type 4): an event type and a 4-byte value (a stream id or,
    for pings, a timestamp); Set Buffer Length adds the buffer length in ms."""

    event: int
    value: int
    buffer_length: int | None = None
    TYPE_ID: ClassVar[int] = MessageType.USER_CONTROL

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        if len(payload) < 2:
            raise RtmpProtocolError("bad_control_message", "User Control too short")
        event = _U16.unpack_from(payload)[0]
        if event == UserControlEvent.SET_BUFFER_LENGTH:
            if len(payload) < 10:
                raise RtmpProtocolError("bad_control_message", "SetBufferLength too short")
            _, stream_id, buffer_ms = _EVENT_BUFFER.unpack_from(payload)
            return cls(event, stream_id, buffer_ms)
        if len(payload) < 6:
            # Unknown short events (e.g. SWF verification requests) carry other layouts.
            if event in _KNOWN_EVENTS:
                raise RtmpProtocolError("bad_control_message", f"User Control {event} short")
            return cls(event, 0)
        return cls(event, _EVENT.unpack_from(payload)[1])

    def __bytes__(self) -> bytes:
        if self.event == UserControlEvent.SET_BUFFER_LENGTH:
            return _EVENT_BUFFER.pack(self.event, self.value, self.buffer_length or 0)
        return _EVENT.pack(self.event, self.value & 0xFFFFFFFF)


def _amf_values(payload: bytes) -> list[AmfValue]:
    if len(payload) > MAX_AMF_MESSAGE_SIZE:
        raise RtmpProtocolError(
            "amf_message_too_large", f"{len(payload)} bytes > {MAX_AMF_MESSAGE_SIZE}"
        )
    return amf0.decode(payload)


@dataclass(frozen=True, slots=True)
class CommandMessage:
    """AMF0 command (type 20): name, transaction id, command object, then arguments."""

    name: str
    transaction_id: float
    command_object: AmfValue = None
    arguments: tuple[AmfValue, ...] = field(default=())
    TYPE_ID: ClassVar[int] = MessageType.COMMAND_AMF0

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        values = _amf_values(payload)
        if len(values) < 2 or not isinstance(values[0], str):
            raise RtmpProtocolError("bad_command", "command without a name and transaction id")
        txn = values[1]
        # Some clients send null for the transaction id of notifications; treat as 0.
        if txn is None:
            txn = 0.0
        if isinstance(txn, bool) or not isinstance(txn, float):
            raise RtmpProtocolError("bad_command", f"transaction id {txn!r}")
        cmd_obj = values[2] if len(values) > 2 else None
        return cls(values[0], txn, cmd_obj, tuple(values[3:]))

    def __bytes__(self) -> bytes:
        return amf0.encode(self.name, self.transaction_id, self.command_object, *self.arguments)


@dataclass(frozen=True, slots=True)
class DataMessage:
    """AMF0 data message (type 18), e.g. ``@setDataFrame``, ``onMetaData``, {...}."""

    values: tuple[AmfValue, ...]
    TYPE_ID: ClassVar[int] = MessageType.DATA_AMF0

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        return cls(tuple(_amf_values(payload)))

    def __bytes__(self) -> bytes:
        return amf0.encode(*self.values)


def reject_amf3(type_id: int) -> None:
    """AMF3 messages end the connection with a clear reason."""
    if type_id in (MessageType.DATA_AMF3, MessageType.COMMAND_AMF3, MessageType.SHARED_OBJECT_AMF3):
        raise RtmpProtocolError("amf3_unsupported", f"message type {type_id}")
