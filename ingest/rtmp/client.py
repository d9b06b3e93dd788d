"""A minimal sans-IO RTMP *publishing* client, for tests, benchmarks and tools.

It speaks like FFmpeg's client: digest handshake (optional), connect, releaseStream,
FCPublish, createStream, publish, @setDataFrame, audio/video, FCUnpublish,
deleteStream. It does not wait for answers by itself: the caller sends, feeds the
server's bytes back with :meth:`receive_data` and reads :meth:`messages`.
"""

from __future__ import annotations

import os

from .amf0 import AmfValue, EcmaArray
from .chunk import ChunkDecoder, ChunkEncoder
from .handshake import ClientHandshake, RandomBytes
from .message import (
    CommandMessage,
    DataMessage,
    MessageType,
    SetChunkSize,
    UserControl,
    UserControlEvent,
)

CSID_CONTROL = 2
CSID_COMMAND = 3
CSID_AUDIO = 4
CSID_DATA = 5
CSID_VIDEO = 6

ServerMessage = CommandMessage | UserControl | tuple[int, bytes]


class RtmpClient:
    def __init__(
        self,
        *,
        random_bytes: RandomBytes = os.urandom,
        epoch: int = 0,
        digest: bool = True,
        compress: bool = True,
        repeat_extended: bool = True,
    ) -> None:
        self._handshake = ClientHandshake(random_bytes, epoch, digest=digest)
        self._decoder = ChunkDecoder()
        self._encoder = ChunkEncoder(compress=compress, repeat_extended=repeat_extended)
        self._out = bytearray(self._handshake.initial_bytes())
        self._txn = 0
        self._messages: list[ServerMessage] = []

    @property
    def handshake(self) -> ClientHandshake:
        return self._handshake

    # -- bytes ---------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed server bytes; parsed server messages collect in :meth:`messages`."""
        if not self._handshake.complete:
            c2, data = self._handshake.receive_data(data)
            self._out += c2
            if not self._handshake.complete:
                return
        self._decoder.receive_data(data)
        while (raw := self._decoder.next_message()) is not None:
            if raw.type_id == MessageType.COMMAND_AMF0:
                self._messages.append(CommandMessage.parse(bytes(raw.payload)))
            elif raw.type_id == MessageType.USER_CONTROL:
                ctrl = UserControl.parse(bytes(raw.payload))
                if ctrl.event == UserControlEvent.PING_REQUEST:
                    self.send_control(UserControl(UserControlEvent.PING_RESPONSE, ctrl.value))
                self._messages.append(ctrl)
            else:
                self._messages.append((raw.type_id, bytes(raw.payload)))

    def messages(self) -> list[ServerMessage]:
        """Server messages parsed since the last call."""
        out, self._messages = self._messages, []
        return out

    # -- sending -------------------------------------------------------------------

    def send_raw(
        self, csid: int, timestamp: int, type_id: int, stream_id: int, body: bytes
    ) -> None:
        self._out += self._encoder.encode(csid, timestamp, type_id, stream_id, body)

    def send_bytes(self, data: bytes) -> None:
        """Queue bytes as they are (hand-made or hostile input in tests)."""
        self._out += data

    def send_control(self, msg: SetChunkSize | UserControl) -> None:
        self.send_raw(CSID_CONTROL, 0, msg.TYPE_ID, 0, bytes(msg))

    def set_chunk_size(self, size: int) -> None:
        self.send_control(SetChunkSize(size))
        self._encoder.set_chunk_size(size)

    def command(
        self, name: str, *args: AmfValue, stream_id: int = 0, obj: AmfValue = None
    ) -> float:
        self._txn += 1
        cmd = CommandMessage(name, float(self._txn), obj, args)
        csid = CSID_DATA if stream_id else CSID_COMMAND
        self.send_raw(csid, 0, cmd.TYPE_ID, stream_id, bytes(cmd))
        return cmd.transaction_id

    def connect(self, app: str, tc_url: str = "", **extra: AmfValue) -> float:
        obj: dict[str, AmfValue] = {
            "app": app,
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; streamd-client)",
            "tcUrl": tc_url or f"rtmp://127.0.0.1/{app}",
        }
        obj.update(extra)
        return self.command("connect", obj=obj)

    def publish_sequence(self, name: str) -> None:
        """releaseStream, FCPublish and createStream, as FFmpeg sends them together."""
        self.command("releaseStream", name)
        self.command("FCPublish", name)
        self.command("createStream")

    def publish(self, stream_id: int, name: str, publish_type: str = "live") -> float:
        return self.command("publish", name, publish_type, stream_id=stream_id)

    def send_metadata(self, stream_id: int, metadata: dict[str, AmfValue]) -> None:
        body = DataMessage(("@setDataFrame", "onMetaData", EcmaArray(metadata)))
        self.send_raw(CSID_DATA, 0, body.TYPE_ID, stream_id, bytes(body))

    def send_audio(self, stream_id: int, timestamp: int, payload: bytes) -> None:
        self.send_raw(CSID_AUDIO, timestamp, MessageType.AUDIO, stream_id, payload)

    def send_video(self, stream_id: int, timestamp: int, payload: bytes) -> None:
        self.send_raw(CSID_VIDEO, timestamp, MessageType.VIDEO, stream_id, payload)

    def unpublish(self, stream_id: int, name: str) -> None:
        """FCUnpublish then deleteStream, as FFmpeg closes."""
        self.command("FCUnpublish", name)
        self.command("deleteStream", float(stream_id))
