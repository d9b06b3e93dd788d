"""AAC: AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) essentials.

Reads audioObjectType (with the escape to 32+), the sampling frequency (index or explicit
24-bit value), the channel configuration (or the channel count of a program config
element), explicit SBR/PS signalling (hierarchical AOT 5/29, and the backward-compatible
sync extensions 0x2B7/0x548 after a GASpecificConfig).
"""

from __future__ import annotations

from dataclasses import dataclass

from media.bits import BitReader
from media.errors import CodecError
from media.types import AudioConfig

# samplingFrequencyIndex 0..12; 13 and 14 are reserved, 15 escapes to a 24-bit value.
# fmt: off
SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025,
                8000, 7350)
# fmt: on
# channelConfiguration -> channel count (ISO/IEC 14496-3 Table 1.19 as amended: 7 is 7.1,
# 11 is 6.1, 12 and 14 are 7.1 variants, 13 is 22.2); 8-10 and 15 are reserved.
_CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}
AOT_SBR = 5
AOT_PS = 29
AOT_ER_BSAC = 22
# Object types whose config is a GASpecificConfig (1.6.2.1): after it come the sync
# extensions; for others (ELD, USAC, ...) parsing stops after the common header.
_GA_OBJECT_TYPES = frozenset({1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23})
_SYNC_SBR = 0x2B7
_SYNC_PS = 0x548
# An AudioSpecificConfig with a program config element and comment stays far below this;
# bounding the window keeps bit reads cheap if a peer sends a huge sequence header.
_MAX_CONFIG_BYTES = 1024


def codec_string(object_type: int) -> str:
    """RFC 6381: "mp4a.40.<audioObjectType>" (0x40 = MPEG-4 Audio)."""
    return f"mp4a.40.{object_type}"


def _object_type(b: BitReader) -> int:
    aot = b.u(5)
    return 32 + b.u(6) if aot == 31 else aot


def _sample_rate(b: BitReader) -> int:
    index = b.u(4)
    if index == 0x0F:
        rate = b.u(24)
        if rate == 0:
            raise CodecError("AudioSpecificConfig: explicit sampling frequency 0")
        return rate
    if index >= len(SAMPLE_RATES):
        raise CodecError(f"AudioSpecificConfig: reserved samplingFrequencyIndex {index}")
    return SAMPLE_RATES[index]


def _program_config_channels(b: BitReader) -> int:
    """Channel count of a program_config_element() (4.4.1.1)."""
    b.skip(4 + 2 + 4)  # element_instance_tag, object_type, sampling_frequency_index
    front, side, back = b.u(4), b.u(4), b.u(4)
    lfe = b.u(2)
    assoc_data, valid_cc = b.u(3), b.u(4)
    if b.flag():  # mono_mixdown_present
        b.skip(4)
    if b.flag():  # stereo_mixdown_present
        b.skip(4)
    if b.flag():  # matrix_mixdown_idx_present
        b.skip(3)
    channels = lfe
    for _ in range(front + side + back):
        channels += 2 if b.flag() else 1  # *_element_is_cpe
        b.skip(4)  # *_element_tag_select
    # LFE and data element tags, then cc_element_is_ind_sw + tag; the comment that follows
    # is not needed.
    b.skip(4 * lfe + 4 * assoc_data + 5 * valid_cc)
    return channels


@dataclass(frozen=True, slots=True)
class AudioSpecificConfig:
    #: The top-level audioObjectType (5/29 when SBR/PS are signalled hierarchically).
    object_type: int
    #: The coded object type under SBR/PS (2 for HE-AAC over AAC LC).
    core_object_type: int
    sample_rate: int
    channel_configuration: int
    #: Output channels: from channelConfiguration or the program config element, and 2 for
    #: a mono core with explicitly signalled Parametric Stereo.
    channels: int
    sbr: bool
    ps: bool
    extension_sample_rate: int | None

    @classmethod
    def parse(cls, data: bytes) -> AudioSpecificConfig:
        b = BitReader(data[:_MAX_CONFIG_BYTES], "AudioSpecificConfig")
        object_type = core = _object_type(b)
        sample_rate = _sample_rate(b)
        channel_config = b.u(4)
        sbr = ps = False
        ext_rate: int | None = None
        if object_type in (AOT_SBR, AOT_PS):
            sbr, ps = True, object_type == AOT_PS
            ext_rate = _sample_rate(b)
            core = _object_type(b)
            if core == AOT_ER_BSAC:
                b.skip(4)  # extensionChannelConfiguration
        channels = _CHANNELS.get(channel_config, 0)
        if core in _GA_OBJECT_TYPES:
            b.skip(1)  # frameLengthFlag
            if b.flag():  # dependsOnCoreCoder
                b.skip(14)  # coreCoderDelay
            extension_flag = b.flag()
            if channel_config == 0:
                channels = _program_config_channels(b)
            if core in (6, 20):
                b.skip(3)  # layerNr
            if extension_flag:
                if core == AOT_ER_BSAC:
                    b.skip(5 + 11)  # numOfSubFrame, layer_length
                if core in (17, 19, 20, 23):
                    b.skip(3)  # the three error resilience flags
                b.skip(1)  # extensionFlag3
            if not sbr:
                sbr, ps, ext_rate = _sync_extensions(b)
        if channel_config and not channels:
            raise CodecError(f"AudioSpecificConfig: reserved channelConfiguration {channel_config}")
        if ps and channels == 1:
            channels = 2  # Parametric Stereo decodes the mono core to stereo
        return cls(object_type, core, sample_rate, channel_config, channels, sbr, ps, ext_rate)


def _sync_extensions(b: BitReader) -> tuple[bool, bool, int | None]:
    """Backward-compatible explicit SBR/PS signalling (1.6.5.2) after the core config.

    The extension is optional trailing data; encoders pad with zero bits, and a partial
    extension is treated as absent (as decoders do) rather than as an error.
    """
    sbr = ps = False
    ext_rate = None
    try:
        if b.bits_left >= 16 and b.u(11) == _SYNC_SBR and _object_type(b) == AOT_SBR:
            sbr = b.flag()
            if sbr:
                ext_rate = _sample_rate(b)
                if b.bits_left >= 12 and b.u(11) == _SYNC_PS:
                    ps = b.flag()
    except CodecError:
        return False, False, None
    return sbr, ps, ext_rate


def parse_config(data: bytes) -> AudioConfig:
    """Build an `AudioConfig` from an AudioSpecificConfig (the AAC sequence header body)."""
    asc = AudioSpecificConfig.parse(data)
    return AudioConfig(
        codec="aac",
        extradata=bytes(data),
        object_type=asc.object_type,
        sample_rate=asc.sample_rate,
        channels=asc.channels,
        codec_string=codec_string(asc.object_type),
        sbr=asc.sbr,
        ps=asc.ps,
        extension_sample_rate=asc.extension_sample_rate,
    )
