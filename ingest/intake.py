"""One publish's RTMP media messages turned into ``media.types`` items, without I/O.

The FLV payload parsers (compiled when built, ``ingest.flv.speedups``) see 64-bit timestamps:
RTMP's wrap after ~49.7 days, and each media kind is extended on its own. Only the default
track of E-RTMP multitrack is ingested; events that carry nothing for the consumers (metadata
in a video tag, sequence ends, empty sequence starts) come back as None.
"""

from __future__ import annotations

from ingest.flv import AudioSequenceStart, VideoSequenceStart
from ingest.flv.speedups import parse_audio_tag, parse_video_tag
from ingest.timestamps import TimestampExtender
from media.types import AudioConfig, MediaPacket, VideoConfig

Payload = bytes | bytearray  # what the chunk decoder hands over


class MediaIntake:
    """Raises what the FLV layer raises: ``UnsupportedCodec``/``UnsupportedFeature`` for media
    streamd does not take, ``FlvError`` for a malformed tag."""

    __slots__ = ("_audio_ts", "_video_ts")

    def __init__(self) -> None:
        self._video_ts = TimestampExtender()
        self._audio_ts = TimestampExtender()

    def video(self, payload: Payload, timestamp: int) -> MediaPacket | VideoConfig | None:
        parsed = parse_video_tag(payload, self._video_ts.extend(timestamp))
        if parsed.track_id != 0:
            return None
        if type(parsed) is MediaPacket:
            return parsed
        return parsed.config if isinstance(parsed, VideoSequenceStart) else None

    def audio(self, payload: Payload, timestamp: int) -> MediaPacket | AudioConfig | None:
        parsed = parse_audio_tag(payload, self._audio_ts.extend(timestamp))
        if parsed.track_id != 0:
            return None
        if type(parsed) is MediaPacket:
            return parsed
        return parsed.config if isinstance(parsed, AudioSequenceStart) else None
