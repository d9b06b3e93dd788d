from __future__ import annotations

import pytest

from ingest.rtmp import RtmpProtocolError
from ingest.rtmp.amf0 import UNDEFINED, encode
from ingest.rtmp.message import (
    MAX_AMF_MESSAGE_SIZE,
    AbortMessage,
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

ROUND_TRIP = [
    SetChunkSize(4096),
    AbortMessage(6),
    Acknowledgement(123456),
    WindowAckSize(2_500_000),
    SetPeerBandwidth(2_500_000, PeerBandwidthLimit.DYNAMIC),
    UserControl(UserControlEvent.STREAM_BEGIN, 1),
    UserControl(UserControlEvent.STREAM_EOF, 1),
    UserControl(UserControlEvent.SET_BUFFER_LENGTH, 1, 3000),
    UserControl(UserControlEvent.PING_REQUEST, 0xFFFFFFFF),
    UserControl(UserControlEvent.PING_RESPONSE, 42),
    CommandMessage("connect", 1.0, {"app": "live"}, ()),
    CommandMessage("publish", 5.0, None, ("key", "live")),
    CommandMessage("onStatus", 0.0, None, ({"code": "NetStream.Publish.Start"},)),
    DataMessage(("@setDataFrame", "onMetaData", {"width": 320.0})),
]


@pytest.mark.parametrize("msg", ROUND_TRIP, ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    cls = type(msg)
    assert cls.parse(bytes(msg)) == msg  # type: ignore[attr-defined]


def test_wire_layouts() -> None:
    assert bytes(SetChunkSize(4096)) == b"\x00\x00\x10\x00"
    assert bytes(SetPeerBandwidth(2_500_000, 2)) == b"\x00\x26\x25\xa0\x02"
    assert bytes(UserControl(UserControlEvent.STREAM_BEGIN, 1)) == b"\x00\x00\x00\x00\x00\x01"
    assert bytes(UserControl(3, 1, 100)) == b"\x00\x03\x00\x00\x00\x01\x00\x00\x00\x64"
    # The top bit of Set Chunk Size is reserved; parse masks it for the decoder to judge.
    assert SetChunkSize.parse(b"\x80\x00\x00\x10").size == 16
    assert SetChunkSize.TYPE_ID == MessageType.SET_CHUNK_SIZE


@pytest.mark.parametrize(
    ("cls", "payload"),
    [
        (SetChunkSize, b"\x00"),
        (AbortMessage, b""),
        (Acknowledgement, b"\x00\x00"),
        (WindowAckSize, b"\x00\x00\x00"),
        (SetPeerBandwidth, b"\x00\x00\x00\x01"),
        (UserControl, b"\x00"),
        (UserControl, b"\x00\x03\x00\x00\x00\x01"),
        (UserControl, b"\x00\x06\x00"),
    ],
)
def test_short_control_bodies(cls: type, payload: bytes) -> None:
    with pytest.raises(RtmpProtocolError) as info:
        cls.parse(payload)
    assert info.value.reason == "bad_control_message"


def test_unknown_short_user_control_is_kept() -> None:
    # SWF verification request (26) has no 4-byte value.
    assert UserControl.parse(b"\x00\x1a") == UserControl(26, 0)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        encode("connect"),
        encode(1.0, 1.0),
        encode("connect", "1"),
        encode("connect", True),
    ],
)
def test_bad_commands(payload: bytes) -> None:
    with pytest.raises(RtmpProtocolError) as info:
        CommandMessage.parse(payload)
    assert info.value.reason == "bad_command"


def test_command_null_transaction_and_missing_object() -> None:
    assert CommandMessage.parse(encode("onFoo", None)) == CommandMessage("onFoo", 0.0, None, ())
    cmd = CommandMessage.parse(encode("_result", 2.0, None, UNDEFINED))
    assert cmd.arguments == (UNDEFINED,)


def test_amf_message_size_cap() -> None:
    big = encode("x" * (MAX_AMF_MESSAGE_SIZE + 1))
    with pytest.raises(RtmpProtocolError) as info:
        DataMessage.parse(big)
    assert info.value.reason == "amf_message_too_large"


@pytest.mark.parametrize("type_id", [15, 16, 17])
def test_amf3_types_rejected(type_id: int) -> None:
    with pytest.raises(RtmpProtocolError) as info:
        reject_amf3(type_id)
    assert info.value.reason == "amf3_unsupported"
    reject_amf3(20)  # AMF0 passes
