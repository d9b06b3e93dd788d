from __future__ import annotations

import pytest

from ingest.rtmp import (
    AudioMessage,
    CloseStream,
    ConnectionClosed,
    ConnectRequest,
    CreateStream,
    DeleteStream,
    FCPublish,
    FCUnpublish,
    HandshakeComplete,
    MetaData,
    PingResponse,
    PublishRequest,
    ReleaseStream,
    RtmpProtocolError,
    RtmpServerConnection,
    UnknownCommand,
    VideoMessage,
)
from ingest.rtmp.amf0 import UNDEFINED
from ingest.rtmp.client import RtmpClient
from ingest.rtmp.connection import MAX_STREAMS
from ingest.rtmp.message import CommandMessage, UserControl, UserControlEvent
from tests.ingest.rtmp.rtmp_helpers import Pair, feed, feed_until_error, seeded


def statuses(pair: Pair) -> list[tuple[str, str]]:
    """(level, code) of every onStatus the client received."""
    out = []
    for msg in pair.client.messages():
        if isinstance(msg, CommandMessage) and msg.name == "onStatus":
            info = msg.arguments[0]
            assert isinstance(info, dict)
            out.append((str(info["level"]), str(info["code"])))
    return out


def test_full_publish_session() -> None:
    pair = Pair()
    assert pair.pump() == []
    assert pair.pump() == [HandshakeComplete(digest=True)]
    assert pair.client.handshake.server_verified

    pair.client.connect("live", "rtmp://example/live", extra=1.0)
    (connect,) = pair.pump()
    assert isinstance(connect, ConnectRequest)
    assert (connect.app, connect.tc_url, connect.transaction_id) == (
        "live",
        "rtmp://example/live",
        1.0,
    )
    assert connect.command_object["extra"] == 1.0
    replies = pair.client.messages()
    # Window Ack Size, Set Peer Bandwidth, Set Chunk Size 4096, then _result.
    assert [r[0] for r in replies[:3] if isinstance(r, tuple)] == [5, 6, 1]
    assert replies[2] == (1, b"\x00\x00\x10\x00")
    result = replies[3]
    assert isinstance(result, CommandMessage)
    assert result.name == "_result"
    assert result.transaction_id == 1.0
    info = result.arguments[0]
    assert isinstance(info, dict)
    assert info["code"] == "NetConnection.Connect.Success"
    assert info["objectEncoding"] == 0.0

    pair.client.publish_sequence("stream-key?token=abc")
    events = pair.pump()
    assert events == [
        ReleaseStream(2.0, "stream-key?token=abc"),
        FCPublish(3.0, "stream-key?token=abc"),
        CreateStream(4.0, 1),
    ]
    results = pair.client.messages()
    assert [
        (r.name, r.transaction_id, r.arguments) for r in results if isinstance(r, CommandMessage)
    ] == [
        ("_result", 2.0, (UNDEFINED,)),
        ("_result", 3.0, (UNDEFINED,)),
        ("_result", 4.0, (1.0,)),
    ]

    pair.client.publish(1, "stream-key?token=abc")
    (publish,) = pair.pump()
    assert publish == PublishRequest(1, 5.0, "stream-key", "token=abc", "live")
    replies = pair.client.messages()
    assert replies[0] == UserControl(UserControlEvent.STREAM_BEGIN, 1)
    assert isinstance(replies[1], CommandMessage)
    assert replies[1].name == "onStatus"

    pair.client.send_metadata(1, {"width": 1280.0, "videocodecid": 7.0})
    pair.client.send_video(1, 0, b"\x17\x00" + bytes(3000))
    pair.client.send_audio(1, 0, b"\xaf\x00\x12\x10")
    pair.client.send_video(1, 33, b"\x27\x01" + bytes(10))
    events = pair.pump()
    assert events[0] == MetaData(1, 0, {"width": 1280.0, "videocodecid": 7.0})
    assert events[1] == VideoMessage(1, 0, b"\x17\x00" + bytes(3000))
    assert events[2] == AudioMessage(1, 0, b"\xaf\x00\x12\x10")
    assert events[3] == VideoMessage(1, 33, b"\x27\x01" + bytes(10))

    pair.client.unpublish(1, "stream-key")
    assert pair.pump() == [FCUnpublish(6.0, "stream-key"), DeleteStream(1, True)]
    pair.server.receive_data(b"")
    assert pair.server.next_event() == ConnectionClosed()


def test_whole_and_byte_at_a_time_feeding_agree() -> None:
    client = RtmpClient(random_bytes=seeded(3))
    # C0C1, then a C2 the server only length-checks, then a whole publish session.
    data = client.data_to_send() + bytes(1536)
    client.connect("live")
    client.publish_sequence("k")
    client.publish(1, "k")
    client.send_metadata(1, {"a": 1.0})
    for ts in range(0, 2000, 33):
        client.send_video(1, ts, bytes([0x27, 1]) + bytes(ts % 700))
        client.send_audio(1, ts + 0x1000000, bytes([0xAF, 1]) + bytes(50))
    client.set_chunk_size(100)
    client.send_video(1, 3000, bytes(1000))
    data += client.data_to_send()

    whole = feed(RtmpServerConnection(random_bytes=seeded(1)), data)
    for step in (1, 5, 1000):
        assert feed(RtmpServerConnection(random_bytes=seeded(1)), data, step=step) == whole
    assert sum(isinstance(e, VideoMessage) for e in whole) == len(range(0, 2000, 33)) + 1
    audio = [e.timestamp for e in whole if isinstance(e, AudioMessage)]
    assert audio == [ts + 0x1000000 for ts in range(0, 2000, 33)]


def test_reject_connect() -> None:
    pair = Pair(accept=False)
    pair.handshake()
    pair.client.connect("live")
    (event,) = pair.pump()
    assert isinstance(event, ConnectRequest)
    pair.server.reject_connect("no such app")
    pair.client.receive_data(pair.server.data_to_send())
    (err,) = pair.client.messages()
    assert isinstance(err, CommandMessage)
    assert err.name == "_error"
    assert isinstance(err.arguments[0], dict)
    assert err.arguments[0]["code"] == "NetConnection.Connect.Rejected"
    with pytest.raises(RuntimeError):
        pair.server.accept_connect()
    # Anything after a rejected connect is a protocol error.
    pair.client.command("createStream")
    with pytest.raises(RtmpProtocolError) as info:
        pair.pump()
    assert info.value.reason == "not_connected"


@pytest.mark.parametrize(
    ("code", "level"),
    [("NetStream.Publish.BadName", "error"), ("NetStream.Publish.Denied", "error")],
)
def test_reject_publish(code: str, level: str) -> None:
    pair = Pair()
    pair.handshake()
    pair.client.connect("live")
    pair.pump()
    pair.client.publish_sequence("k")
    pair.pump()
    pair.accept = False
    pair.client.publish(1, "k")
    pair.pump()
    pair.server.reject_publish(1, code, "nope")
    pair.client.receive_data(pair.server.data_to_send())
    assert statuses(pair) == [(level, code)]
    # The stream may publish again after a rejection.
    pair.client.publish(1, "k2")
    assert [type(e) for e in pair.pump()] == [PublishRequest]


def test_300_byte_stream_name_is_refused() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.connect("live")
    pair.pump()
    pair.client.command("createStream")
    pair.pump()
    pair.client.messages()
    pair.client.publish(1, "k" * 300)
    with pytest.raises(RtmpProtocolError) as info:
        pair.pump()
    assert info.value.reason == "name_too_long"
    # The BadName status was queued before the error: the glue flushes it, then closes.
    pair.client.receive_data(pair.server.data_to_send())
    assert statuses(pair) == [("error", "NetStream.Publish.BadName")]
    with pytest.raises(RtmpProtocolError):  # sticky
        pair.server.next_event()
    pair.server.receive_data(b"ignored after an error")


def test_long_query_is_refused_and_empty_name_left_to_the_glue() -> None:
    for name in ("", "?x=1"):
        pair = Pair()
        pair.handshake()
        pair.client.connect("live/key-in-app")
        pair.pump()
        pair.client.command("createStream")
        pair.pump()
        pair.client.publish(1, name)
        requests = [e for e in pair.pump() if isinstance(e, PublishRequest)]
        assert [(r.name, r.query) for r in requests] == [("", name.partition("?")[2])]
    for name, why in (("k?" + "q" * 1100, "name_too_long"),):
        pair = Pair()
        pair.handshake()
        pair.client.connect("live")
        pair.pump()
        pair.client.command("createStream")
        pair.pump()
        pair.client.publish(1, name)
        with pytest.raises(RtmpProtocolError) as info:
            pair.pump()
        assert info.value.reason == why


def test_long_app_name_rejects_connect() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.connect("a" * 200)
    with pytest.raises(RtmpProtocolError) as info:
        pair.pump()
    assert info.value.reason == "name_too_long"
    pair.client.receive_data(pair.server.data_to_send())
    (err,) = pair.client.messages()
    assert isinstance(err, CommandMessage)
    assert err.name == "_error"


@pytest.mark.parametrize(
    ("send", "why"),
    [
        (lambda c: c.command("createStream"), "not_connected"),
        (lambda c: c.command("connect"), "bad_connect"),
        (lambda c: c.publish(1, "k"), "not_connected"),
        (lambda c: c.send_raw(3, 0, 17, 0, b"\x00\x02\x00\x07connect"), "amf3_unsupported"),
        (lambda c: c.send_raw(3, 0, 15, 0, b"\x00"), "amf3_unsupported"),
    ],
)
def test_protocol_violations(send: object, why: str) -> None:
    pair = Pair()
    pair.handshake()
    send(pair.client)  # type: ignore[operator]
    with pytest.raises(RtmpProtocolError) as info:
        pair.pump()
    assert info.value.reason == why


def test_publish_state_errors() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.connect("live")
    pair.pump()
    pair.client.publish(3, "k")  # no such stream
    with pytest.raises(RtmpProtocolError) as info:
        pair.pump()
    assert info.value.reason == "unknown_stream"

    pair = Pair()
    stream_id = pair.publishing()
    pair.client.publish(stream_id, "again")
    with pytest.raises(RtmpProtocolError) as info:
        pair.pump()
    assert info.value.reason == "duplicate_publish"

    pair = Pair()
    pair.publishing()
    pair.client.connect("live")
    with pytest.raises(RtmpProtocolError) as info:
        pair.pump()
    assert info.value.reason == "duplicate_connect"


def test_media_before_publish_is_dropped_and_counted() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.connect("live")
    pair.pump()
    pair.client.command("createStream")
    pair.pump()
    pair.client.send_video(1, 0, b"\x17\x00")
    pair.client.send_metadata(1, {})
    pair.client.send_audio(5, 0, b"\xaf")
    assert pair.pump() == []
    assert pair.server.dropped_messages == 3


def test_too_many_streams() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.connect("live")
    pair.pump()
    for _ in range(MAX_STREAMS):
        pair.client.command("createStream")
    ids = [e.stream_id for e in pair.pump() if isinstance(e, CreateStream)]
    assert ids == list(range(1, MAX_STREAMS + 1))
    pair.client.command("deleteStream", 3.0)
    assert pair.pump() == [DeleteStream(3, False)]
    pair.client.command("createStream")
    assert next(e for e in pair.pump() if isinstance(e, CreateStream)).stream_id == 3
    pair.client.command("createStream")
    with pytest.raises(RtmpProtocolError) as info:
        pair.pump()
    assert info.value.reason == "too_many_streams"


def test_close_stream_and_end_publish() -> None:
    pair = Pair()
    sid = pair.publishing()
    pair.client.command("closeStream", stream_id=sid)
    assert pair.pump() == [CloseStream(sid, True)]
    assert statuses(pair) == [("status", "NetStream.Unpublish.Success")]
    pair.client.send_video(sid, 0, b"\x17")
    assert pair.pump() == []

    pair = Pair()
    sid = pair.publishing()
    pair.server.end_publish(sid)
    pair.client.receive_data(pair.server.data_to_send())
    assert statuses(pair) == [("status", "NetStream.Unpublish.Success")]
    with pytest.raises(RuntimeError):
        pair.server.end_publish(sid)
    with pytest.raises(RuntimeError):
        pair.server.accept_publish(sid)

    pair = Pair()
    sid = pair.publishing()
    pair.server.fail_publish(sid, "Refused: unsupported audio codec: mp3")
    pair.client.receive_data(pair.server.data_to_send())
    assert statuses(pair) == [("error", "NetStream.Failed")]
    pair.client.send_audio(sid, 0, b"\x2f")
    assert pair.pump() == []  # media after the failure is not delivered


def test_ignored_commands_and_unknown_ones() -> None:
    pair = Pair()
    pair.publishing()
    pair.client.command("closeStream", stream_id=7)  # unknown stream
    pair.client.command("deleteStream", 9.0)  # unknown stream
    pair.client.command("deleteStream", "x")  # not a number
    pair.client.command("deleteStream", float("nan"))
    pair.client.command("deleteStream", 1e300)
    pair.client.command("play", "k")
    assert pair.pump() == [UnknownCommand(0, "play", 11.0)]
    pair.server.reject_command(11.0, "play is not supported")
    pair.client.receive_data(pair.server.data_to_send())
    (err,) = pair.client.messages()
    assert isinstance(err, CommandMessage)
    assert (err.name, err.transaction_id) == ("_error", 11.0)


def test_pings_both_ways() -> None:
    pair = Pair()
    pair.publishing()
    pair.server.send_ping(12345)
    pair.client.receive_data(pair.server.data_to_send())
    assert pair.client.messages() == [UserControl(UserControlEvent.PING_REQUEST, 12345)]
    assert pair.pump() == [PingResponse(12345)]
    pair.client.send_control(UserControl(UserControlEvent.PING_REQUEST, 99))
    pair.client.send_control(UserControl(UserControlEvent.SET_BUFFER_LENGTH, 1, 100))
    assert pair.pump() == []
    assert pair.client.messages() == [UserControl(UserControlEvent.PING_RESPONSE, 99)]


def test_acknowledgements_follow_the_peer_window() -> None:
    pair = Pair()
    sid = pair.publishing()
    pair.client.send_raw(2, 0, 5, 0, (1000).to_bytes(4, "big"))  # Window Ack Size 1000
    pair.pump()
    received_before = pair.server.bytes_received
    for ts in range(5):
        pair.client.send_video(sid, ts, bytes(600))
    pair.pump()
    acks = [m for m in pair.client.messages() if isinstance(m, tuple) and m[0] == 3]
    assert len(acks) == 1  # one pump delivered > 1000 bytes at once
    assert int.from_bytes(acks[0][1], "big") == pair.server.bytes_received
    assert pair.server.bytes_received - received_before > 3000


def test_setdataframe_variants() -> None:
    pair = Pair()
    sid = pair.publishing()
    pair.client.send_raw(
        5, 0, 18, sid, b"\x02\x00\x0aonMetaData\x03\x00\x01w\x00" + bytes(8) + b"\x00\x00\x09"
    )
    pair.client.send_raw(5, 0, 18, sid, b"\x02\x00\x0aonTextData\x05")
    pair.client.send_raw(5, 0, 18, sid, b"")
    pair.client.send_raw(5, 0, 18, sid, b"\x02\x00\x0aonMetaData")
    assert pair.pump() == [MetaData(sid, 0, {"w": 0.0}), MetaData(sid, 0, {})]


def test_eof_before_handshake_and_mid_message() -> None:
    conn = RtmpServerConnection(random_bytes=seeded(1))
    assert conn.next_event() is None
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    conn.receive_data(b"\x03")  # ignored after EOF
    events, why = feed_until_error(
        RtmpServerConnection(random_bytes=seeded(1)), b"\x03" + bytes(3072) + b"\x05"
    )
    assert (events, why) == ([HandshakeComplete(False)], None)


def test_buffered_bytes_are_reported() -> None:
    pair = Pair()
    sid = pair.publishing()
    pair.client.send_video(sid, 0, bytes(10000))
    data = pair.client.data_to_send()
    pair.server.receive_data(data[:5000])
    assert pair.server.next_event() is None
    assert pair.server.buffered_bytes >= 5000
    assert pair.server.chunk_decoder.buffered_message_bytes == 10000


def _hostile_chunk_size(c: RtmpClient) -> None:
    c.send_raw(2, 0, 1, 0, b"\x7f\xff\xff\xff")


def _csid_flood(c: RtmpClient) -> None:
    for csid in range(65599, 65599 - 200, -1):
        c.send_raw(csid, 0, 8, 1, b"")


def _huge_header(c: RtmpClient) -> None:
    # A fmt 0 header announcing 0xFFFFFF bytes, and not one byte of payload.
    c.send_bytes(b"\x06" + bytes(3) + b"\xff\xff\xff\x09" + b"\x01\x00\x00\x00")


def _deep_amf(c: RtmpClient) -> None:
    body = b"\x02\x00\x07connect\x00" + bytes(8) + b"\x03\x00\x01k" * 10_000
    c.send_raw(3, 0, 20, 0, body)


@pytest.mark.parametrize(
    ("attack", "why"),
    [
        (_hostile_chunk_size, "chunk_size_too_large"),
        (_csid_flood, "too_many_chunk_streams"),
        (_huge_header, "message_too_large"),
        (_deep_amf, "amf_too_deep"),
    ],
)
def test_hostile_peers_after_handshake(attack: object, why: str) -> None:
    pair = Pair()
    pair.handshake()
    attack(pair.client)  # type: ignore[operator]
    with pytest.raises(RtmpProtocolError) as info:
        pair.pump()
    assert info.value.reason == why
    assert pair.server.buffered_bytes < 70_000


def test_random_bytes_instead_of_a_handshake() -> None:
    junk = seeded(9)(5000)
    junk = b"\x47" + junk[1:]  # not version 3 (a TLS or HTTP client would look like this)
    events, why = feed_until_error(RtmpServerConnection(random_bytes=seeded(1)), junk, step=7)
    assert (events, why) == ([], "bad_version")
    assert feed_until_error(RtmpServerConnection(), b"GET / HTTP/1.1\r\n") == ([], "bad_version")
