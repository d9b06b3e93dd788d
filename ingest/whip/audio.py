"""WebRTC's Opus -> the AAC-LC that HLS players take (Safari plays no Opus in HLS): the
shared `AudioTranscode` (timeline, gap fill) set up for it, run by `AudioTranscoder`'s thread
per publish."""

from __future__ import annotations

import av
from av.audio.codeccontext import AudioCodecContext

from media.aac import parse_config
from media.audio_transcode import AudioTranscode
from media.types import AudioConfig

RATE = 48_000
BITRATE = 128_000
AAC_FRAME = 1024


class OpusToAac(AudioTranscode):
    def __init__(self) -> None:
        decoder = av.CodecContext.create("opus", "r")
        assert isinstance(decoder, AudioCodecContext)
        decoder.sample_rate = RATE
        decoder.layout = "stereo"
        super().__init__(decoder, "aac", RATE, BITRATE, AAC_FRAME)
        self.config: AudioConfig = parse_config(bytes(self.encoder.extradata or b""))
