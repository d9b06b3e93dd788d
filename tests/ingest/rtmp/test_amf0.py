from __future__ import annotations

import time

import pytest

from ingest.rtmp import RtmpProtocolError
from ingest.rtmp.amf0 import (
    MAX_DEPTH,
    MAX_VALUES,
    UNDEFINED,
    AmfDate,
    AmfValue,
    EcmaArray,
    decode,
    encode,
)


def reason(data: bytes) -> str:
    with pytest.raises(RtmpProtocolError) as info:
        decode(data)
    return info.value.reason


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (1.0, "003ff0000000000000"),
        (True, "0101"),
        (False, "0100"),
        ("ab", "0200026162"),
        (None, "05"),
        (UNDEFINED, "06"),
        ({"a": 1.0}, "0300016100" + "3ff0000000000000" + "000009"),
        (EcmaArray(a=None), "0800000001" + "00016105" + "000009"),
        ([None, True], "0a00000002050101"),
        (AmfDate(0.0, 0), "0b00000000000000000000"),
    ],
)
def test_known_encodings(value: AmfValue, wire: str) -> None:
    assert encode(value).hex() == wire
    assert decode(bytes.fromhex(wire)) == [value]


def test_round_trip_of_a_connect_command() -> None:
    values: list[AmfValue] = [
        "connect",
        1.0,
        {
            "app": "live",
            "tcUrl": "rtmp://h/live",
            "fpad": False,
            "nested": {"list": [1.0, "x", None, UNDEFINED, {"deep": EcmaArray(k="v")}]},
            "when": AmfDate(1.7e12, -60),
            "unicode": "ключ-🔑",
        },
    ]
    assert decode(encode(*values)) == values
    assert isinstance(decode(encode(EcmaArray(a=1.0)))[0], EcmaArray)


def test_long_string_and_xml_and_typed_object() -> None:
    long = "x" * 70000
    wire = encode(long)
    assert wire[0] == 0x0C
    assert decode(wire) == [long]
    assert decode(b"\x0f\x00\x00\x00\x03<a>") == ["<a>"]
    typed = b"\x10\x00\x03Cls" + b"\x00\x01k\x05" + b"\x00\x00\x09"
    assert decode(typed) == [{"k": None}]


def test_ints_encode_as_numbers_and_bad_types_are_refused() -> None:
    assert decode(encode(3)) == [3.0]
    with pytest.raises(TypeError):
        encode(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="property name"):
        encode({"k" * 70000: None})


def test_nested_10000_deep_is_refused_quickly() -> None:
    for opener in (b"\x03\x00\x01k", b"\x0a\x00\x00\x00\x01", b"\x08\x00\x00\x00\x01\x00\x01k"):
        data = opener * 10000 + b"\x05"
        start = time.perf_counter()
        assert reason(data) == "amf_too_deep"
        assert time.perf_counter() - start < 1.0


def test_depth_cap_is_exact() -> None:
    ok = b"\x0a\x00\x00\x00\x01" * MAX_DEPTH + b"\x05"
    assert decode(ok)
    assert reason(b"\x0a\x00\x00\x00\x01" * (MAX_DEPTH + 1) + b"\x05") == "amf_too_deep"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x11\x04\x01", "amf3_unsupported"),
        (b"\x07\x00\x01", "amf_reference_unsupported"),
        (b"\x0d", "amf_bad_marker"),
        (b"\x09", "amf_bad_marker"),
        (b"\x00\x3f", "amf_truncated"),
        (b"\x02\x00\x05ab", "amf_truncated"),
        (b"\x03\x00\x01k", "amf_truncated"),
        (b"\x0a\xff\xff\xff\xff\x05", "amf_truncated"),
        (b"\x02\x00\x02\xff\xfe", "amf_bad_string"),
        (b"\x0c\xff\xff\xff\xff", "amf_truncated"),
    ],
)
def test_malformed_input(data: bytes, why: str) -> None:
    assert reason(data) == why


def test_value_count_is_capped() -> None:
    assert reason(b"\x05" * (MAX_VALUES + 1)) == "amf_too_many_values"
    assert len(decode(b"\x05" * MAX_VALUES)) == MAX_VALUES


def test_empty_key_without_end_marker_is_a_property() -> None:
    assert decode(b"\x03\x00\x00\x05\x00\x00\x09") == [{"": None}]
