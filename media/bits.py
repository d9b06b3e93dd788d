"""Bounds-checked readers for codec configuration records (never used on frame payloads).

`ByteReader` walks byte-aligned records (avcC, hvcC arrays); `BitReader` walks bit fields
(SPS/VPS, AV1 sequence headers, AudioSpecificConfig). Both raise `CodecError` on overrun, so
parsers can read fields straight from peer data without a try/except around every access.
"""

from __future__ import annotations

from media.errors import CodecError

# Exp-Golomb codes in the syntax we parse never need more than 32 leading zeros (ue(v) of
# a 32-bit value); a longer run is malformed.
_MAX_EXP_GOLOMB_ZEROS = 32


def strip_emulation_prevention(nal: bytes) -> bytes:
    """Remove H.264/H.265 emulation-prevention bytes (00 00 03 -> 00 00) from a NAL unit.

    `bytes.replace` works left to right without overlap, which is exactly the RBSP rule:
    every 00 00 03 in a conforming NAL unit is an escape, and the 03 is never reused as
    the start of the next match.
    """
    return bytes(nal).replace(b"\x00\x00\x03", b"\x00\x00")


class ByteReader:
    """Sequential big-endian reads over a bytes object."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = bytes(data)  # no copy for bytes; tolerates bytearray/memoryview
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _take(self, n: int) -> int:
        start = self._pos
        if n < 0 or start + n > len(self._data):
            raise CodecError(f"{self._what}: truncated (need {n} bytes at offset {start})")
        self._pos = start + n
        return start

    def u8(self) -> int:
        return self._data[self._take(1)]

    def u16(self) -> int:
        start = self._take(2)
        return int.from_bytes(self._data[start : start + 2], "big")

    def u24(self) -> int:
        start = self._take(3)
        return int.from_bytes(self._data[start : start + 3], "big")

    def u32(self) -> int:
        start = self._take(4)
        return int.from_bytes(self._data[start : start + 4], "big")

    def read(self, n: int) -> bytes:
        start = self._take(n)
        return self._data[start : start + n]

    def rest(self) -> bytes:
        return self.read(self.remaining)


class BitReader:
    """MSB-first bit reader with Exp-Golomb helpers.

    Each read converts only the bytes it spans with `int.from_bytes`, so the cost of a read
    does not grow with the size of the (peer-sized) buffer.
    """

    __slots__ = ("_data", "_nbits", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = bytes(data)  # no copy for bytes; tolerates bytearray/memoryview
        self._nbits = len(data) * 8
        self._pos = 0
        self._what = what

    @property
    def bits_left(self) -> int:
        return self._nbits - self._pos

    @property
    def position(self) -> int:
        return self._pos

    def u(self, n: int) -> int:
        """Read an n-bit unsigned field (n may be 0)."""
        pos = self._pos
        end = pos + n
        if end > self._nbits:
            raise CodecError(f"{self._what}: truncated (need {n} bits at bit {pos})")
        self._pos = end
        first, last = pos >> 3, (end + 7) >> 3
        chunk = int.from_bytes(self._data[first:last], "big")
        return (chunk >> ((last << 3) - end)) & ((1 << n) - 1)

    def flag(self) -> bool:
        return self.u(1) == 1

    def skip(self, n: int) -> None:
        if n < 0 or self._pos + n > self._nbits:
            raise CodecError(f"{self._what}: truncated (skip {n} bits at bit {self._pos})")
        self._pos += n

    def _leading_zeros(self, window: int) -> int:
        """Count and consume the zero bits before the next 1 bit, and that 1 bit.

        Only `window` bytes past the current one are searched; zero bytes are skipped at C
        speed (lstrip), so a long zero run in peer data costs no Python iteration per bit.
        """
        data, pos = self._data, self._pos
        first = pos >> 3
        masked = data[first] & (0xFF >> (pos & 7)) if first < len(data) else 0
        if masked:
            bit = (first << 3) + 8 - masked.bit_length()
        else:
            ahead = data[first + 1 : first + 1 + window]
            rest = ahead.lstrip(b"\x00")
            if not rest:
                raise CodecError(f"{self._what}: bad variable-length code at bit {pos}")
            index = first + 1 + len(ahead) - len(rest)
            bit = (index << 3) + 8 - rest[0].bit_length()
        self._pos = bit + 1
        return bit - pos

    def ue(self, limit: int = 0xFFFFFFFE) -> int:
        """Read ue(v); values above `limit` (the syntax element's legal maximum) are errors."""
        zeros = self._leading_zeros(_MAX_EXP_GOLOMB_ZEROS // 8 + 1)
        if zeros > _MAX_EXP_GOLOMB_ZEROS:
            raise CodecError(f"{self._what}: Exp-Golomb code too long")
        value = (1 << zeros) - 1 + self.u(zeros)
        if value > limit:
            raise CodecError(f"{self._what}: Exp-Golomb value {value} above {limit}")
        return value

    def se(self) -> int:
        """Read se(v)."""
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)

    def uvlc(self) -> int:
        """AV1 uvlc(): like ue(v), except that 32 or more leading zeros mean 2**32 - 1."""
        zeros = self._leading_zeros(len(self._data))
        if zeros >= 32:
            return (1 << 32) - 1
        return (1 << zeros) - 1 + self.u(zeros)
