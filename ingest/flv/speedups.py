"""Which FLV tag parsers ingest uses: the compiled fast path when it was built, else Python.

``_tags_c.pyx`` builds the packets of plain coded frames in C and passes every other payload
to ``tags.py`` (the reference), so both give the same events and errors (the tag tests run
against both). Built by the install like ``ingest.rtmp._chunk_c``; ``STREAMD_PURE_PYTHON=1``
forces the Python parsers (see :mod:`ingest.compiled`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from ingest.compiled import pure_python_forced
from ingest.flv import tags

VideoParser: TypeAlias = Callable[[tags.Payload, int], tags.VideoEvent]
AudioParser: TypeAlias = Callable[[tags.Payload, int], tags.AudioEvent]


def compiled_parsers() -> tuple[VideoParser, AudioParser] | None:
    """The compiled (video, audio) parsers, or None when the extension was not built."""
    try:
        from ingest.flv import _tags_c
    except ImportError:
        return None
    return _tags_c.parse_video_tag, _tags_c.parse_audio_tag


def _pick() -> tuple[VideoParser, AudioParser]:
    compiled = None if pure_python_forced() else compiled_parsers()
    return compiled or (tags.parse_video_tag, tags.parse_audio_tag)


parse_video_tag, parse_audio_tag = _pick()
#: True when coded frames are parsed in C.
COMPILED = parse_video_tag is not tags.parse_video_tag
