"""Sans-IO RTMP server protocol: handshake, chunk stream, messages, AMF0, connection.

The server glue uses :class:`RtmpServerConnection` and the events; the lower layers
are public for tests, tools and benchmarks.
"""

from .connection import (
    MAX_APP_LENGTH,
    MAX_QUERY_LENGTH,
    MAX_STREAM_NAME_LENGTH,
    MAX_STREAMS,
    MAX_TCURL_LENGTH,
    RtmpServerConnection,
)
from .errors import RtmpProtocolError
from .events import (
    AudioMessage,
    CloseStream,
    ConnectionClosed,
    ConnectRequest,
    CreateStream,
    DeleteStream,
    Event,
    FCPublish,
    FCUnpublish,
    HandshakeComplete,
    MetaData,
    PingResponse,
    PublishRequest,
    ReleaseStream,
    UnknownCommand,
    VideoMessage,
)

__all__ = [
    "MAX_APP_LENGTH",
    "MAX_QUERY_LENGTH",
    "MAX_STREAMS",
    "MAX_STREAM_NAME_LENGTH",
    "MAX_TCURL_LENGTH",
    "AudioMessage",
    "CloseStream",
    "ConnectRequest",
    "ConnectionClosed",
    "CreateStream",
    "DeleteStream",
    "Event",
    "FCPublish",
    "FCUnpublish",
    "HandshakeComplete",
    "MetaData",
    "PingResponse",
    "PublishRequest",
    "ReleaseStream",
    "RtmpProtocolError",
    "RtmpServerConnection",
    "UnknownCommand",
    "VideoMessage",
]
