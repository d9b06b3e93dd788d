"""The live's AAC -> the Opus that WebRTC carries, once per live for all of its WHEP viewers."""

from __future__ import annotations

import av
from av.audio.codeccontext import AudioCodecContext

from media.audio_transcode import AudioTranscode
from media.types import AudioConfig

RATE = 48_000  # Opus in WebRTC is always 48 kHz on the wire
BITRATE = 96_000
FRAME = 960  # 20 ms, what browsers send and expect


class AacToOpus(AudioTranscode):
    def __init__(self, config: AudioConfig) -> None:
        decoder = av.CodecContext.create("aac", "r")
        assert isinstance(decoder, AudioCodecContext)
        decoder.extradata = config.extradata
        decoder.sample_rate = config.extension_sample_rate or config.sample_rate
        super().__init__(decoder, "libopus", RATE, BITRATE, FRAME)
