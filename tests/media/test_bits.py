"""The config bit/byte readers against a reference that works on a string of '0'/'1'."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.bits import BitReader, ByteReader
from media.errors import CodecError


class Reference:
    def __init__(self, data: bytes) -> None:
        self.bits = "".join(f"{byte:08b}" for byte in data)
        self.pos = 0

    def u(self, n: int) -> int | None:
        if self.pos + n > len(self.bits):
            return None
        value = int(self.bits[self.pos : self.pos + n] or "0", 2)
        self.pos += n
        return value

    def exp_golomb(self, av1: bool) -> int | None:
        one = self.bits.find("1", self.pos)
        if one < 0:
            return None
        zeros = one - self.pos
        if av1 and zeros >= 32:
            self.pos = one + 1
            return (1 << 32) - 1
        if not av1 and zeros > 31:  # beyond ue(v) of a 32-bit value: the reader refuses
            return None
        if one + 1 + zeros > len(self.bits):
            return None
        self.pos = one + 1
        return (1 << zeros) - 1 + (self.u(zeros) or 0)


@given(
    # Mostly zero bytes, so long Exp-Golomb prefixes and overruns are common.
    data=st.lists(st.sampled_from([0, 0, 0, 1, 0x80]) | st.integers(0, 255), max_size=24).map(
        bytes
    ),
    ops=st.lists(st.one_of(st.integers(0, 33), st.sampled_from(["ue", "uvlc"])), max_size=40),
)
def test_bit_reader_matches_reference(data: bytes, ops: list[int | str]) -> None:
    reader, reference = BitReader(data, "test"), Reference(data)
    for op in ops:
        call: Callable[[], int]
        if isinstance(op, int):
            expected = reference.u(op)
            call = functools.partial(reader.u, op)
        else:
            expected = reference.exp_golomb(op == "uvlc")
            call = reader.ue if op == "ue" else reader.uvlc
        if expected is None:
            with pytest.raises(CodecError):
                call()
            return
        assert call() == expected
        assert reader.position == reference.pos
        assert reader.bits_left == len(reference.bits) - reference.pos


def test_exp_golomb_values() -> None:
    # 1 | 010 | 011 | 011 | 00100: ue 0, 1, 2, then se -1 (k = 2) and se 2 (k = 3).
    reader = BitReader(bytes([0b10100110, 0b11001000]), "test")
    assert [reader.ue(), reader.ue(), reader.ue(), reader.se(), reader.se()] == [0, 1, 2, -1, 2]
    assert BitReader(b"\x20", "test").ue(limit=3) == 3  # 00100
    with pytest.raises(CodecError, match="above 2"):
        BitReader(b"\x20", "test").ue(limit=2)


def test_long_zero_runs_are_refused_quickly() -> None:
    with pytest.raises(CodecError):
        BitReader(bytes(1_000_000), "test").ue()
    reader = BitReader(bytes(1_000_000) + b"\x80", "test")
    assert reader.uvlc() == (1 << 32) - 1
    assert reader.bits_left == 7


def test_byte_reader() -> None:
    reader = ByteReader(b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a", "test")
    assert (reader.u8(), reader.u16(), reader.u24()) == (1, 0x0203, 0x040506)
    assert reader.u32() == 0x0708090A
    assert reader.remaining == 0
    assert reader.rest() == b""
    with pytest.raises(CodecError, match="truncated"):
        reader.u8()
