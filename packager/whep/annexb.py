"""The packager's AVCC H.264 (length-prefixed NAL units, parameter sets in the avcC) -> the
Annex B access units that aiortc's H.264 packetizer splits on start codes, with the SPS and
PPS in band before every keyframe (a viewer that joins or lost packets needs them there)."""

from __future__ import annotations

from media.avc import AvcDecoderConfigurationRecord
from media.errors import CodecError
from media.types import VideoConfig

START = b"\x00\x00\x00\x01"


class AnnexB:
    def __init__(self, config: VideoConfig) -> None:
        if config.codec != "h264" or config.nal_length_size is None:
            raise CodecError(f"WebRTC playback takes H.264 only, not {config.codec}")
        record = AvcDecoderConfigurationRecord.parse(config.extradata)
        self.length_size = config.nal_length_size
        self.parameter_sets = b"".join(START + nal for nal in (*record.sps, *record.pps))
        self.profile_idc = record.profile_idc

    def frame(self, data: bytes, keyframe: bool) -> bytes:
        size = self.length_size
        parts = [self.parameter_sets] if keyframe else []
        offset, end = 0, len(data)
        while offset + size <= end:
            length = int.from_bytes(data[offset : offset + size], "big")
            offset += size
            if length == 0 or offset + length > end:
                raise CodecError("H.264 sample: a NAL unit runs past the sample")
            nal_type = data[offset] & 0x1F
            if not (keyframe and nal_type in (7, 8)) and nal_type != 9:  # in-band SPS/PPS, AUD
                parts.append(START)
                parts.append(data[offset : offset + length])
            offset += length
        if offset != end:
            raise CodecError("H.264 sample: trailing bytes after the last NAL unit")
        return b"".join(parts)
