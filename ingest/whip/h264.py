"""WebRTC H.264 access units -> the packager's AVCC packets and configs, without decoding.

What the RTP depacketizer (RFC 6184, aiortc's) hands over per frame is an Annex B byte stream:
NAL units behind start codes, with the SPS and PPS in band before each IDR (OBS and browsers
repeat them). The packager wants what FLV carries: length-prefixed NAL units per access unit and
the parameter sets once, as an avcC. So the parameter sets are lifted out of the stream into a
`VideoConfig` (a new one whenever they change), the access unit delimiters are dropped, and
the rest is length-prefixed.

A frame that cannot be decoded on its own is held back until the stream has a decodable
start: no packet before the first IDR with its parameter sets, and none after a loss
(`broken`) until the next IDR. Garbage (no start code, a forbidden bit) raises `CodecError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.avc import NAL_PPS, NAL_SPS, AvcDecoderConfigurationRecord, parse_config
from media.errors import CodecError
from media.types import VideoConfig

NAL_IDR = 5
NAL_AUD = 9
NAL_SLICE = 1
NAL_LENGTH_SIZE = 4
#: A parameter set bigger than this is not one an encoder writes (x264's SPS is ~30 bytes).
MAX_PARAMETER_SET = 1024


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B stream (3- or 4-byte start codes)."""
    if not (data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01")):
        raise CodecError("H.264 frame does not start with a start code")
    units: list[bytes] = []
    start = data.index(b"\x00\x00\x01") + 3
    while True:
        following = data.find(b"\x00\x00\x01", start)
        if following < 0:
            units.append(data[start:])
            break
        units.append(data[start:following])
        start = following + 3
    # A NAL unit never ends in a zero byte: zeros before a start code belong to it (a 4-byte
    # start code's first byte, trailing_zero_8bits).
    nals = [stripped for nal in units if (stripped := nal.rstrip(b"\x00"))]
    for nal in nals:
        if nal[0] & 0x80:
            raise CodecError("H.264 NAL unit with the forbidden_zero_bit set")
    return nals


def has_idr(data: bytes) -> bool:
    """Whether an Annex B access unit holds an IDR slice: a look at each NAL header only
    (the arrival of a keyframe is timed before the frame is framed)."""
    start = data.find(b"\x00\x00\x01")
    while 0 <= start < len(data) - 3:
        if data[start + 3] & 0x1F == NAL_IDR:
            return True
        start = data.find(b"\x00\x00\x01", start + 3)
    return False


@dataclass(slots=True)
class Framed:
    """One access unit as the packager takes it; ``config`` set when it changed."""

    data: bytes
    keyframe: bool
    config: VideoConfig | None


class H264Framer:
    __slots__ = ("_config", "_pps", "_sps", "_unsent", "broken")

    def __init__(self) -> None:
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        self._config: VideoConfig | None = None
        self._unsent = False  # a config not yet handed out with a frame
        #: Frames were lost since the last IDR: hold everything until the next one.
        self.broken = True

    @property
    def config(self) -> VideoConfig | None:
        return self._config

    def lost(self) -> None:
        """The transport lost frames: what follows refers to pictures we do not have."""
        self.broken = True

    def frame(self, data: bytes) -> Framed | None:
        """One depacketized frame; None while it cannot be muxed (no decodable start yet)."""
        out = bytearray()
        keyframe = False
        has_slice = False
        sps, pps = self._sps, self._pps
        for nal in split_annexb(data):
            kind = nal[0] & 0x1F
            if kind in (NAL_SPS, NAL_PPS):
                if len(nal) > MAX_PARAMETER_SET:
                    raise CodecError("H.264 parameter set too large")
                if kind == NAL_SPS and len(nal) < 4:
                    raise CodecError("H.264 SPS too short")
                if kind == NAL_SPS:
                    sps = nal
                else:
                    pps = nal
                continue
            if kind == NAL_AUD:
                continue
            if kind == NAL_IDR:
                keyframe = True
            if NAL_SLICE <= kind <= NAL_IDR:
                has_slice = True
            out += len(nal).to_bytes(NAL_LENGTH_SIZE, "big") + nal
        if sps is not None and pps is not None and (sps != self._sps or pps != self._pps):
            record = AvcDecoderConfigurationRecord(
                sps[1], sps[2], sps[3], NAL_LENGTH_SIZE, (sps,), (pps,)
            )
            self._config = parse_config(bytes(record))
            self._sps, self._pps, self._unsent = sps, pps, True
        if not has_slice:
            return None  # parameter sets or SEI alone: nothing to show
        if keyframe and self._config is not None:
            self.broken = False
        if self.broken:
            return None
        # A config that came with a frame held back goes out with the first frame let through.
        config, self._unsent = (self._config if self._unsent else None), False
        return Framed(bytes(out), keyframe, config)
