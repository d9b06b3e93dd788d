"""The one exception family of the FLV payload layer.

Everything a publisher can get wrong in an audio/video tag payload raises `FlvError` (a
`ValueError`), never `IndexError`, `struct.error` or `assert`. Two subclasses tell "well-formed
but not something streamd ingests" apart from "malformed", so the session can log the codec
name and answer the publisher with a clear status instead of a generic protocol error.
"""

from __future__ import annotations

from typing import Literal

MediaKind = Literal["audio", "video"]


class FlvError(ValueError):
    """A malformed FLV audio/video tag payload or codec configuration record."""


class UnsupportedCodec(FlvError):
    """A well-formed tag carrying a codec that streamd does not ingest (MP3, Opus, VP8...)."""

    def __init__(self, media: MediaKind, codec: str) -> None:
        super().__init__(f"unsupported {media} codec: {codec}")
        self.media: MediaKind = media
        self.codec = codec


class UnsupportedFeature(FlvError):
    """A well-formed tag using an FLV/E-RTMP feature that streamd does not implement."""

    def __init__(self, media: MediaKind, feature: str) -> None:
        super().__init__(f"unsupported {media} feature: {feature}")
        self.media: MediaKind = media
        self.feature = feature
