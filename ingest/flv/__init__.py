"""FLV payload layer: audio/video tag payloads and codec configuration records.

Sans-IO and pure: `parse_video_tag(payload, timestamp)` and `parse_audio_tag(payload,
timestamp)` turn the body of an RTMP audio (type 8) or video (type 9) message into one typed
event. Malformed input raises `FlvError` (a `ValueError`); well-formed input that streamd
does not ingest raises its subclasses `UnsupportedCodec` / `UnsupportedFeature`.

Supported: H.264 (legacy codec id 7, or E-RTMP avc1), HEVC (E-RTMP hvc1, or legacy codec
id 12), AV1 (av01), VP9 (vp09); AAC (legacy SoundFormat 10, or E-RTMP mp4a). E-RTMP v2
ModEx is skipped, Multitrack is accepted in its OneTrack form (what FFmpeg and OBS send),
with the track id on every event.
"""

from ingest.flv.errors import FlvError, UnsupportedCodec, UnsupportedFeature
from ingest.flv.tags import (
    AudioEvent,
    AudioSequenceEnd,
    AudioSequenceStart,
    Ignored,
    VideoEvent,
    VideoMetadata,
    VideoSequenceEnd,
    VideoSequenceStart,
    may_be_keyframe,
    parse_audio_tag,
    parse_video_tag,
)

__all__ = [
    "AudioEvent",
    "AudioSequenceEnd",
    "AudioSequenceStart",
    "FlvError",
    "Ignored",
    "UnsupportedCodec",
    "UnsupportedFeature",
    "VideoEvent",
    "VideoMetadata",
    "VideoSequenceEnd",
    "VideoSequenceStart",
    "may_be_keyframe",
    "parse_audio_tag",
    "parse_video_tag",
]
