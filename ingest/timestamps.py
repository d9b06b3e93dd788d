"""RTMP timestamps are 32-bit milliseconds and wrap after ~49.7 days; sessions need them linear."""

from __future__ import annotations

_WRAP = 1 << 32
_HALF = 1 << 31


class TimestampExtender:
    """Turns wrapping 32-bit timestamps into a non-wrapping int, per media kind."""

    __slots__ = ("_last", "_offset")

    def __init__(self) -> None:
        self._last: int | None = None
        self._offset = 0

    def extend(self, timestamp: int) -> int:
        last = self._last
        if last is not None:
            if timestamp < last - _HALF:  # wrapped forwards
                self._offset += _WRAP
            elif timestamp > last + _HALF and self._offset:  # a late packet from before a wrap
                self._last = timestamp
                return self._offset - _WRAP + timestamp
        self._last = timestamp
        return self._offset + timestamp
