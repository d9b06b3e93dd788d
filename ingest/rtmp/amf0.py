"""AMF0 encoding and decoding (Adobe "Action Message Format 0" spec), capped.

Python mapping: number -> float, boolean -> bool, string / long string / XML document
-> str, object / typed object -> dict, ECMA array -> :class:`EcmaArray` (a dict),
strict array -> list, null -> None, undefined -> :data:`UNDEFINED`, date ->
:class:`AmfDate`.

Rejected: references (0x07: they index an object table no RTMP publisher needs; FFmpeg
does not write them either), the AMF3 switch marker (0x11, "amf3_unsupported"), and the
never-used movieclip/recordset/unsupported markers. Strings must be valid UTF-8: a
stream key with bad bytes is refused rather than silently rewritten, so two different
keys can never decode to the same text.

The decoder recurses, but every container entry checks the depth first, so hostile
nesting stops at :data:`MAX_DEPTH` long before Python's recursion limit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, TypeAlias

from .errors import RtmpProtocolError

#: Deepest nesting of objects/arrays accepted; real metadata is 2-3 deep.
MAX_DEPTH: Final = 32
#: Most values decoded from one message (each container, key and leaf counts once);
#: bounds the Python objects a small-but-dense message can make (a null is 1 byte).
MAX_VALUES: Final = 8192

NUMBER = 0x00
BOOLEAN = 0x01
STRING = 0x02
OBJECT = 0x03
NULL = 0x05
UNDEFINED_MARKER = 0x06
REFERENCE = 0x07
ECMA_ARRAY = 0x08
OBJECT_END = 0x09
STRICT_ARRAY = 0x0A
DATE = 0x0B
LONG_STRING = 0x0C
XML_DOCUMENT = 0x0F
TYPED_OBJECT = 0x10
AVMPLUS = 0x11

_DOUBLE = struct.Struct(">d")
_DATE = struct.Struct(">dh")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class _Undefined:
    """The AMF0 ``undefined`` value (distinct from null)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()


@dataclass(frozen=True, slots=True)
class AmfDate:
    """Milliseconds since the Unix epoch plus the (ignored by everyone) timezone."""

    milliseconds: float
    timezone: int = 0


class EcmaArray(dict[str, "AmfValue"]):
    """An associative array; kept apart from dict so it re-encodes as marker 0x08
    (FFmpeg and OBS send onMetaData as an ECMA array)."""


AmfValue: TypeAlias = (
    float | bool | str | _Undefined | AmfDate | dict[str, "AmfValue"] | list["AmfValue"] | None
)


class _Decoder:
    __slots__ = ("_count", "_data", "_max_values", "_pos")

    def __init__(self, data: bytes, max_values: int) -> None:
        self._data = data
        self._pos = 0
        self._count = 0
        self._max_values = max_values

    def _take(self, n: int) -> int:
        """Advance by n bytes, returning the old position."""
        pos = self._pos
        if pos + n > len(self._data):
            raise RtmpProtocolError("amf_truncated", f"need {n} bytes at {pos}")
        self._pos = pos + n
        return pos

    def _text(self, n: int) -> str:
        pos = self._take(n)
        try:
            return self._data[pos : pos + n].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RtmpProtocolError("amf_bad_string", str(exc)) from None

    def _short_text(self) -> str:
        return self._text(_U16.unpack_from(self._data, self._take(2))[0])

    def _counted(self) -> None:
        self._count += 1
        if self._count > self._max_values:
            raise RtmpProtocolError("amf_too_many_values", f"over {self._max_values}")

    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def value(self, depth: int = 0) -> AmfValue:
        self._counted()
        marker = self._data[self._take(1)]
        if marker == NUMBER:
            return float(_DOUBLE.unpack_from(self._data, self._take(8))[0])
        if marker == BOOLEAN:
            return self._data[self._take(1)] != 0
        if marker == STRING:
            return self._short_text()
        if marker == NULL:
            return None
        if marker == UNDEFINED_MARKER:
            return UNDEFINED
        if marker in (LONG_STRING, XML_DOCUMENT):
            return self._text(_U32.unpack_from(self._data, self._take(4))[0])
        if marker == DATE:
            ms, tz = _DATE.unpack_from(self._data, self._take(10))
            return AmfDate(float(ms), int(tz))
        if marker in (OBJECT, ECMA_ARRAY, STRICT_ARRAY, TYPED_OBJECT):
            if depth >= MAX_DEPTH:
                raise RtmpProtocolError("amf_too_deep", f"over {MAX_DEPTH} levels")
            if marker == STRICT_ARRAY:
                return self._strict_array(depth + 1)
            if marker == ECMA_ARRAY:
                self._take(4)  # element count: a hint that encoders often get wrong
                return self._properties(EcmaArray(), depth + 1)
            if marker == TYPED_OBJECT:
                self._short_text()  # class name: nothing in RTMP ingest uses it
            return self._properties({}, depth + 1)
        if marker == AVMPLUS:
            raise RtmpProtocolError("amf3_unsupported", "AMF0 avmplus switch marker")
        if marker == REFERENCE:
            raise RtmpProtocolError("amf_reference_unsupported")
        raise RtmpProtocolError("amf_bad_marker", f"marker 0x{marker:02x}")

    def _properties(self, target: dict[str, AmfValue], depth: int) -> dict[str, AmfValue]:
        data = self._data
        while True:
            key = self._short_text()
            if not key and self._pos < len(data) and data[self._pos] == OBJECT_END:
                self._pos += 1
                return target
            self._counted()
            target[key] = self.value(depth)

    def _strict_array(self, depth: int) -> list[AmfValue]:
        count = _U32.unpack_from(self._data, self._take(4))[0]
        # Every value takes at least one byte: refuse impossible counts before looping.
        if count > len(self._data) - self._pos:
            raise RtmpProtocolError("amf_truncated", f"strict array of {count} values")
        return [self.value(depth) for _ in range(count)]


def decode(data: bytes, *, max_values: int = MAX_VALUES) -> list[AmfValue]:
    """Decode every AMF0 value in ``data`` (a command or data message body)."""
    dec = _Decoder(bytes(data), max_values)
    values: list[AmfValue] = []
    while not dec.at_end():
        values.append(dec.value())
    return values


def _encode_into(out: bytearray, value: AmfValue) -> None:
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out += bytes((BOOLEAN, int(value)))
    elif isinstance(value, int | float):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += _U16.pack(len(raw))
        else:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, AmfDate):
        out.append(DATE)
        out += _DATE.pack(value.milliseconds, value.timezone)
    elif isinstance(value, dict):
        if isinstance(value, EcmaArray):
            out.append(ECMA_ARRAY)
            out += _U32.pack(len(value))
        else:
            out.append(OBJECT)
        for key, item in value.items():
            raw_key = key.encode("utf-8")
            if len(raw_key) > 0xFFFF:
                raise ValueError("AMF0 property name longer than 65535 bytes")
            out += _U16.pack(len(raw_key))
            out += raw_key
            _encode_into(out, item)
        out += b"\x00\x00\x09"
    elif isinstance(value, list):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_into(out, item)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def encode(*values: AmfValue) -> bytes:
    """Encode values back to back, as a command or data message body."""
    out = bytearray()
    for value in values:
        _encode_into(out, value)
    return bytes(out)
