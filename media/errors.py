"""The one exception of the codec layer."""

from __future__ import annotations


class CodecError(ValueError):
    """A malformed codec configuration record or parameter set (peer data: never an
    ``IndexError``, ``struct.error`` or ``assert``)."""
