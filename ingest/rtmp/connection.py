"""Server side of one RTMP connection, sans-IO: bytes in, events out, bytes to send.

Use (the asyncio glue does exactly this)::

    conn = RtmpServerConnection()
    conn.receive_data(data)          # b"" when the peer closed
    while (event := conn.next_event()) is not None:
        ...                          # may call conn.accept_connect(), accept_publish() ...
    transport.write(conn.data_to_send())

``next_event`` raises :class:`RtmpProtocolError` for anything the peer got wrong; after
that it raises the same error again. Replies queued just before the error (an
``_error`` or ``NetStream.Publish.BadName`` status) are in ``data_to_send()``: flush
them, then close.

What is answered here without the glue: the handshake, ``createStream`` (a ``_result``
with a new stream id), ``releaseStream``/``FCPublish`` (an empty ``_result``, what FFmpeg
and OBS's librtmp expect, both ignore it), ping requests, acknowledgements when the
peer set a window, and ``NetStream.Unpublish.Success`` on ``closeStream``. Names over
the caps are refused here too (see the constants).
"""

from __future__ import annotations

import enum
import os
from typing import Final

from . import speedups
from .amf0 import UNDEFINED, AmfValue
from .chunk import ChunkDecoder, ChunkEncoder, RawMessage
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
from .handshake import RandomBytes, ServerHandshake
from .message import (
    Acknowledgement,
    CommandMessage,
    DataMessage,
    MessageType,
    PeerBandwidthLimit,
    SetChunkSize,
    SetPeerBandwidth,
    UserControl,
    UserControlEvent,
    WindowAckSize,
    reject_amf3,
)

#: Message streams (createStream) open at once; a publisher needs one.
MAX_STREAMS: Final = 8
#: Bytes of the app name (FFmpeg's client allows 128).
MAX_APP_LENGTH: Final = 128
#: Bytes of tcUrl (FFmpeg's client allows 512; keys may ride in it, so some room).
MAX_TCURL_LENGTH: Final = 1024
#: Bytes of the stream key, the publish name before '?' (FFmpeg's playpath max is 256).
MAX_STREAM_NAME_LENGTH: Final = 256
#: Bytes of what follows '?' in the publish name (tokens, auth parameters).
MAX_QUERY_LENGTH: Final = 1024

#: What we ask the client to acknowledge and to limit itself to (nginx-rtmp, SRS and
#: FFmpeg's listener use 2,500,000 / 5,000,000-ish values).
DEFAULT_WINDOW_ACK_SIZE: Final = 2_500_000
#: Our outbound chunk size, announced before the connect _result.
DEFAULT_OUT_CHUNK_SIZE: Final = 4096

_VIDEO: Final = int(MessageType.VIDEO)  # plain ints: compared for every message
_AUDIO: Final = int(MessageType.AUDIO)

CSID_CONTROL: Final = 2
CSID_COMMAND: Final = 3
CSID_STATUS: Final = 5
_MASK32: Final = 0xFFFFFFFF


class _Connect(enum.Enum):
    NONE = 0
    PENDING = 1
    ACCEPTED = 2
    REJECTED = 3


class _Stream(enum.Enum):
    CREATED = 0
    PUBLISH_PENDING = 1
    PUBLISHING = 2


_PUBLISHING: Final = _Stream.PUBLISHING  # a global lookup, not an attribute lookup too


def _text_arg(args: tuple[AmfValue, ...], index: int = 0) -> str:
    value = args[index] if len(args) > index else None
    return value if isinstance(value, str) else ""


def _check_length(value: str, cap: int, what: str) -> None:
    if len(value.encode("utf-8")) > cap:
        raise RtmpProtocolError("name_too_long", f"{what} longer than {cap} bytes")


class RtmpServerConnection:
    """One server-side RTMP connection (publish only; ``play`` is an UnknownCommand)."""

    def __init__(
        self,
        *,
        random_bytes: RandomBytes = os.urandom,
        epoch: int = 0,
        window_ack_size: int = DEFAULT_WINDOW_ACK_SIZE,
        out_chunk_size: int = DEFAULT_OUT_CHUNK_SIZE,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self._handshake = ServerHandshake(random_bytes, epoch)
        self._hs_in = bytearray()
        self._hs_read: bytearray | None = None  # get_buffer's room during the handshake
        self._decoder = speedups.ChunkDecoder()  # compiled when built; same behaviour
        self._encoder = ChunkEncoder()
        self._out = bytearray()
        self._window_ack_size = window_ack_size
        self._out_chunk_size = out_chunk_size
        self._max_streams = max_streams
        self._connect = _Connect.NONE
        self._connect_txn = 0.0
        self._streams: dict[int, _Stream] = {}
        self._stream_names: dict[int, str] = {}
        self._peer_window = 0
        self._last_ack = 0
        self._eof = False
        self._error: RtmpProtocolError | None = None
        #: Bytes received from the peer so far (handshake included).
        self.bytes_received = 0
        self._handshake_done = False
        #: Audio/video/data messages dropped because their stream was not publishing.
        self.dropped_messages = 0

    # -- feeding -------------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        """Input held here: unparsed bytes plus bytes reserved by partial messages."""
        hs = len(self._hs_in) + self._handshake.buffered_bytes
        return hs + self._decoder.unparsed_bytes + self._decoder.buffered_message_bytes

    @property
    def chunk_decoder(self) -> ChunkDecoder:
        return self._decoder

    def receive_data(self, data: bytes) -> None:
        """Queue bytes from the peer; ``b""`` means the peer closed its side."""
        if self._error is not None or self._eof:
            return
        if not data:
            self._eof = True
            return
        if self._chunks_follow():
            self._decoder.receive_data(data)
        else:
            self._hs_in += data
        self._received(len(data))

    def _chunks_follow(self) -> bool:
        """The handshake is over: what the peer sends now is chunks (a plain bool once true,
        for the hot path)."""
        if not self._handshake_done and self._handshake.complete:
            self._handshake_done = True
        return self._handshake_done

    def _received(self, nbytes: int) -> None:
        self.bytes_received += nbytes
        if self._peer_window and self.bytes_received - self._last_ack >= self._peer_window:
            self._last_ack = self.bytes_received
            self._send_control(Acknowledgement(self.bytes_received & _MASK32))

    def get_buffer(self, size: int) -> memoryview:
        """Room for at least ``size`` bytes from the peer, for asyncio.BufferedProtocol: the
        socket reads straight into the chunk decoder's input once the handshake is done.
        Follow with :meth:`buffer_updated` (the same as :meth:`receive_data` of those bytes)."""
        if self._handshake_done or self._chunks_follow():
            return self._decoder.get_buffer(size)
        self._hs_read = bytearray(size)  # a few KiB, twice per connection
        return memoryview(self._hs_read)

    def buffer_updated(self, nbytes: int) -> None:
        if self._hs_read is not None:
            data, self._hs_read = bytes(self._hs_read[:nbytes]), None
            self.receive_data(data)
            return
        if self._error is not None or self._eof or nbytes <= 0:
            return
        self._decoder.buffer_updated(nbytes)
        self._received(nbytes)

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        """The next event, or None when more bytes are needed."""
        if self._error is not None:
            raise self._error
        try:
            if not self._handshake_done:
                event = self._handshake_event()
                if event is not None or not self._handshake_done:
                    return event
            decoder = self._decoder
            streams = self._streams
            while (raw := decoder.next_message()) is not None:
                # Audio and video of a publishing stream, nearly every message: made into
                # their event here, without a call of _handle.
                type_id = raw.type_id
                if type_id in (_VIDEO, _AUDIO) and streams.get(raw.stream_id) is _PUBLISHING:
                    media = VideoMessage if type_id == _VIDEO else AudioMessage
                    return media(raw.stream_id, raw.timestamp, raw.payload)
                event = self._handle(raw)
                if event is not None:
                    return event
            return ConnectionClosed() if self._eof else None
        except RtmpProtocolError as exc:
            self._error = exc
            raise

    def _handshake_event(self) -> Event | None:
        """Drive the handshake; once it is over, set _handshake_done and return None."""
        if self._handshake.complete:
            self._handshake_done = True
            return None
        if self._hs_in:
            data = bytes(self._hs_in)
            self._hs_in.clear()
            rest = self._handshake.receive_data(data)
            self._out += self._handshake.data_to_send()
            if rest is not None:
                self._decoder.receive_data(rest)
                return HandshakeComplete(self._handshake.digest)
        return ConnectionClosed() if self._eof else None

    # -- incoming messages ---------------------------------------------------------

    def _handle(self, raw: RawMessage) -> Event | None:
        type_id = raw.type_id
        if type_id == MessageType.VIDEO or type_id == MessageType.AUDIO:
            # next_event made those of a publishing stream into events; these are not.
            self.dropped_messages += 1
            return None
        if type_id == MessageType.COMMAND_AMF0:
            return self._on_command(CommandMessage.parse(bytes(raw.payload)), raw.stream_id)
        if type_id == MessageType.DATA_AMF0:
            return self._on_data(raw)
        if type_id == MessageType.USER_CONTROL:
            return self._on_user_control(UserControl.parse(bytes(raw.payload)))
        if type_id == MessageType.WINDOW_ACK_SIZE:
            self._peer_window = WindowAckSize.parse(bytes(raw.payload)).size
            self._last_ack = self.bytes_received
            return None
        reject_amf3(type_id)
        # Set Chunk Size and Abort were applied by the decoder; acknowledgements, peer
        # bandwidth, shared objects and aggregates are not used by publishers.
        return None

    def _on_user_control(self, msg: UserControl) -> Event | None:
        if msg.event == UserControlEvent.PING_RESPONSE:
            return PingResponse(msg.value)
        if msg.event == UserControlEvent.PING_REQUEST:
            self._send_control(UserControl(UserControlEvent.PING_RESPONSE, msg.value))
        return None

    def _on_data(self, raw: RawMessage) -> Event | None:
        if self._streams.get(raw.stream_id) is not _Stream.PUBLISHING:
            self.dropped_messages += 1
            return None
        values = DataMessage.parse(bytes(raw.payload)).values
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if not values or values[0] != "onMetaData":
            return None  # onTextData, onCuePoint ...: nothing downstream uses them yet
        meta = next((v for v in values[1:] if isinstance(v, dict)), {})
        return MetaData(raw.stream_id, raw.timestamp, dict(meta))

    def _on_command(self, cmd: CommandMessage, stream_id: int) -> Event | None:
        name = cmd.name
        txn = cmd.transaction_id
        if name == "connect":
            return self._on_connect(cmd)
        if self._connect is _Connect.NONE or self._connect is _Connect.REJECTED:
            raise RtmpProtocolError("not_connected", f"{name!r} before connect")
        if name == "releaseStream" or name == "FCPublish":
            key = _text_arg(cmd.arguments)
            _check_length(key, MAX_STREAM_NAME_LENGTH + MAX_QUERY_LENGTH + 1, name)
            self._send_result(txn, UNDEFINED)
            return ReleaseStream(txn, key) if name == "releaseStream" else FCPublish(txn, key)
        if name == "createStream":
            if len(self._streams) >= self._max_streams:
                raise RtmpProtocolError("too_many_streams", f"over {self._max_streams}")
            new_id = next(i for i in range(1, self._max_streams + 1) if i not in self._streams)
            self._streams[new_id] = _Stream.CREATED
            self._send_result(txn, float(new_id))
            return CreateStream(txn, new_id)
        if name == "publish":
            return self._on_publish(cmd, stream_id)
        if name == "FCUnpublish":
            key = _text_arg(cmd.arguments)
            _check_length(key, MAX_STREAM_NAME_LENGTH + MAX_QUERY_LENGTH + 1, name)
            return FCUnpublish(txn, key)
        if name == "closeStream":
            was = self._streams.get(stream_id)
            if was is None:
                return None
            self._streams[stream_id] = _Stream.CREATED
            if was is _Stream.PUBLISHING:
                self._send_status(stream_id, "status", "NetStream.Unpublish.Success", "Stopped.")
            return CloseStream(stream_id, was is _Stream.PUBLISHING)
        if name == "deleteStream":
            arg = cmd.arguments[0] if cmd.arguments else None
            if not isinstance(arg, float) or not arg.is_integer():
                return None
            was = self._streams.pop(int(arg), None) if 0 < arg <= _MASK32 else None
            if was is None:
                return None
            self._stream_names.pop(int(arg), None)
            return DeleteStream(int(arg), was is _Stream.PUBLISHING)
        return UnknownCommand(stream_id, name, txn)

    def _on_connect(self, cmd: CommandMessage) -> Event:
        if self._connect is not _Connect.NONE:
            raise RtmpProtocolError("duplicate_connect")
        obj = cmd.command_object
        if not isinstance(obj, dict):
            raise RtmpProtocolError("bad_connect", "connect without a command object")
        app = obj.get("app")
        tc_url = obj.get("tcUrl")
        app = app if isinstance(app, str) else ""
        tc_url = tc_url if isinstance(tc_url, str) else ""
        self._connect_txn = cmd.transaction_id
        try:
            _check_length(app, MAX_APP_LENGTH, "app")
            _check_length(tc_url, MAX_TCURL_LENGTH, "tcUrl")
        except RtmpProtocolError as exc:
            self._connect = _Connect.PENDING
            self.reject_connect(exc.detail)
            raise
        self._connect = _Connect.PENDING
        return ConnectRequest(cmd.transaction_id, app, tc_url, dict(obj), cmd.arguments)

    def _on_publish(self, cmd: CommandMessage, stream_id: int) -> Event:
        state = self._streams.get(stream_id)
        if state is None:
            raise RtmpProtocolError("unknown_stream", f"publish on stream {stream_id}")
        if state is not _Stream.CREATED:
            raise RtmpProtocolError("duplicate_publish", f"stream {stream_id}")
        full = _text_arg(cmd.arguments)
        key, _, query = full.partition("?")
        publish_type = _text_arg(cmd.arguments, 1) or "live"
        # An empty name is legal here: OBS with Server "rtmp://HOST/live/KEY" and an empty key
        # field sends app "live/KEY" and publish name "". The glue decides what a name means.
        try:
            _check_length(key, MAX_STREAM_NAME_LENGTH, "stream name")
            _check_length(query, MAX_QUERY_LENGTH, "stream name query")
        except RtmpProtocolError as exc:
            self._send_status(stream_id, "error", "NetStream.Publish.BadName", exc.detail)
            raise
        self._streams[stream_id] = _Stream.PUBLISH_PENDING
        self._stream_names[stream_id] = key
        return PublishRequest(stream_id, cmd.transaction_id, key, query, publish_type)

    # -- answers from the glue -----------------------------------------------------

    def accept_connect(self, *, description: str = "Connection succeeded.") -> None:
        """Window Ack Size, Set Peer Bandwidth, Set Chunk Size, then the _result."""
        self._expect_connect_pending()
        self._connect = _Connect.ACCEPTED
        self._send_control(WindowAckSize(self._window_ack_size))
        self._send_control(SetPeerBandwidth(self._window_ack_size, PeerBandwidthLimit.DYNAMIC))
        self._send_control(SetChunkSize(self._out_chunk_size))
        self._encoder.set_chunk_size(self._out_chunk_size)
        props: dict[str, AmfValue] = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}
        info: dict[str, AmfValue] = {
            "level": "status",
            "code": "NetConnection.Connect.Success",
            "description": description,
            "objectEncoding": 0.0,
        }
        self._send_command(0, CommandMessage("_result", self._connect_txn, props, (info,)))

    def reject_connect(self, description: str = "Connection rejected.") -> None:
        """``_error`` with NetConnection.Connect.Rejected; close after flushing."""
        self._expect_connect_pending()
        self._connect = _Connect.REJECTED
        info: dict[str, AmfValue] = {
            "level": "error",
            "code": "NetConnection.Connect.Rejected",
            "description": description,
        }
        self._send_command(0, CommandMessage("_error", self._connect_txn, None, (info,)))

    def accept_publish(self, stream_id: int) -> None:
        """Stream Begin, then onStatus NetStream.Publish.Start; media events follow."""
        self._expect_stream(stream_id, _Stream.PUBLISH_PENDING)
        self._streams[stream_id] = _Stream.PUBLISHING
        self._send_control(UserControl(UserControlEvent.STREAM_BEGIN, stream_id))
        name = self._stream_names.get(stream_id, "")
        self._send_status(
            stream_id, "status", "NetStream.Publish.Start", f"{name} is now published."
        )

    def reject_publish(
        self,
        stream_id: int,
        code: str = "NetStream.Publish.BadName",
        description: str = "Publish rejected.",
    ) -> None:
        """onStatus level error with ``code`` (BadName, Denied, ...)."""
        self._expect_stream(stream_id, _Stream.PUBLISH_PENDING)
        self._streams[stream_id] = _Stream.CREATED
        self._send_status(stream_id, "error", code, description)

    def end_publish(self, stream_id: int, description: str = "Stopped.") -> None:
        """Server-side end of a publish: onStatus NetStream.Unpublish.Success."""
        self._expect_stream(stream_id, _Stream.PUBLISHING)
        self._streams[stream_id] = _Stream.CREATED
        self._send_status(stream_id, "status", "NetStream.Unpublish.Success", description)

    def fail_publish(self, stream_id: int, description: str) -> None:
        """Server-side end of a publish on an error (unsupported codec): onStatus error
        NetStream.Failed, which FFmpeg and OBS show to the streamer."""
        self._expect_stream(stream_id, _Stream.PUBLISHING)
        self._streams[stream_id] = _Stream.CREATED
        self._send_status(stream_id, "error", "NetStream.Failed", description)

    def reject_command(self, transaction_id: float, description: str) -> None:
        """``_error`` NetConnection.Call.Failed for an UnknownCommand that wants a reply."""
        info: dict[str, AmfValue] = {
            "level": "error",
            "code": "NetConnection.Call.Failed",
            "description": description,
        }
        self._send_command(0, CommandMessage("_error", transaction_id, None, (info,)))

    def send_ping(self, timestamp: int) -> None:
        """Ping Request; the client's answer comes back as a PingResponse event."""
        self._send_control(UserControl(UserControlEvent.PING_REQUEST, timestamp & _MASK32))

    def _expect_connect_pending(self) -> None:
        if self._connect is not _Connect.PENDING:
            raise RuntimeError(f"no connect request to answer (state {self._connect.name})")

    def _expect_stream(self, stream_id: int, state: _Stream) -> None:
        if self._streams.get(stream_id) is not state:
            raise RuntimeError(f"stream {stream_id} is not {state.name}")

    # -- outgoing ------------------------------------------------------------------

    def _send_control(
        self, msg: SetChunkSize | WindowAckSize | SetPeerBandwidth | UserControl | Acknowledgement
    ) -> None:
        self._out += self._encoder.encode(CSID_CONTROL, 0, msg.TYPE_ID, 0, bytes(msg))

    def _send_command(self, stream_id: int, cmd: CommandMessage) -> None:
        csid = CSID_STATUS if stream_id else CSID_COMMAND
        self._out += self._encoder.encode(csid, 0, cmd.TYPE_ID, stream_id, bytes(cmd))

    def _send_result(self, txn: float, value: AmfValue) -> None:
        if txn:  # transaction 0 means the client wants no answer
            self._send_command(0, CommandMessage("_result", txn, None, (value,)))

    def _send_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        info: dict[str, AmfValue] = {"level": level, "code": code, "description": description}
        self._send_command(stream_id, CommandMessage("onStatus", 0.0, None, (info,)))
