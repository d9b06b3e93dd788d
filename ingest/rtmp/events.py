"""Events that :class:`~ingest.rtmp.connection.RtmpServerConnection` hands the glue.

Plain slotted records (not frozen: media events are made per packet and frozen
dataclasses initialise noticeably slower).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .amf0 import AmfValue


@dataclass(slots=True)
class Event:
    """Base class of every event."""


@dataclass(slots=True)
class HandshakeComplete(Event):
    digest: bool  # the client used the digest ("complex") handshake


@dataclass(slots=True)
class ConnectRequest(Event):
    """Answer with ``accept_connect()`` or ``reject_connect(description)``."""

    transaction_id: float
    app: str
    tc_url: str
    command_object: dict[str, AmfValue]
    arguments: tuple[AmfValue, ...] = field(default=())


@dataclass(slots=True)
class ReleaseStream(Event):
    transaction_id: float
    name: str


@dataclass(slots=True)
class FCPublish(Event):
    transaction_id: float
    name: str


@dataclass(slots=True)
class CreateStream(Event):
    """Already answered with ``_result`` carrying ``stream_id``."""

    transaction_id: float
    stream_id: int


@dataclass(slots=True)
class PublishRequest(Event):
    """Answer with ``accept_publish(stream_id)`` or ``reject_publish(stream_id, ...)``.
    ``name`` is the stream key (before '?'), ``query`` what follows '?' (or "")."""

    stream_id: int
    transaction_id: float
    name: str
    query: str
    publish_type: str


@dataclass(slots=True)
class FCUnpublish(Event):
    transaction_id: float
    name: str


@dataclass(slots=True)
class CloseStream(Event):
    """The publisher stopped publishing on ``stream_id`` (``closeStream``)."""

    stream_id: int
    was_publishing: bool


@dataclass(slots=True)
class DeleteStream(Event):
    stream_id: int
    was_publishing: bool


@dataclass(slots=True)
class MetaData(Event):
    """``@setDataFrame``/``onMetaData`` (or bare ``onMetaData``) on a publishing stream."""

    stream_id: int
    timestamp: int
    metadata: dict[str, AmfValue]


@dataclass(slots=True)
class AudioMessage(Event):
    """Raw FLV audio tag body; ``timestamp`` is the 32-bit RTMP time in ms."""

    stream_id: int
    timestamp: int
    payload: bytes | bytearray  # the reassembled message, not copied


@dataclass(slots=True)
class VideoMessage(Event):
    """Raw FLV video tag body; ``timestamp`` is the 32-bit RTMP time (DTS) in ms."""

    stream_id: int
    timestamp: int
    payload: bytes | bytearray  # the reassembled message, not copied


@dataclass(slots=True)
class PingResponse(Event):
    """Echo of ``send_ping(timestamp)``."""

    timestamp: int


@dataclass(slots=True)
class UnknownCommand(Event):
    """A command this layer does not handle (``play``, ``_checkbw``, ...). Answer with
    ``reject_command`` if the client waits for a reply, or ignore it."""

    stream_id: int
    name: str
    transaction_id: float


@dataclass(slots=True)
class ConnectionClosed(Event):
    """The peer closed its side (``receive_data(b"")``) and every byte was parsed."""
