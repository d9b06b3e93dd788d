"""ISO BMFF boxes for fragmented MP4: the initialisation segment (ftyp + moov).

Written by hand rather than through FFmpeg's mp4 muxer: passthrough needs no decoding and no
muxer state, only a few fixed boxes around the codec configuration records that ingest already
parsed (``VideoConfig.extradata`` is the avcC/hvcC/av1C payload, ``AudioConfig.extradata`` the
AudioSpecificConfig). References: ISO/IEC 14496-12 (boxes), 14496-15 (avcC/hvcC sample
entries), 14496-14 (esds), the AV1-ISOBMFF binding, and FFmpeg's libavformat/movenc.c.

Track 1 is video (timescale 90 kHz), track 2 audio (timescale = the AAC core sample rate, so
every AAC frame lasts exactly 1024 ticks).
"""

from __future__ import annotations

import struct

from media.types import AudioConfig, VideoConfig
from packager.hls.segment import TrackFormat

VIDEO_TRACK = 1
AUDIO_TRACK = 2
VIDEO_TIMESCALE = 90_000
AAC_FRAME_SAMPLES = 1024

_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4  # ISO 639-2 "und", packed as three 5-bit letters
_SAMPLE_ENTRY = {"h264": b"avc1", "hevc": b"hvc1", "av1": b"av01", "vp9": b"vp09"}
_CONFIG_BOX = {"h264": b"avcC", "hevc": b"hvcC", "av1": b"av1C", "vp9": b"vpcC"}


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def audio_timescale(config: AudioConfig) -> int:
    return config.sample_rate


def init_segment(fmt: TrackFormat) -> bytes:
    """ftyp + moov (with mvex) for the tracks of ``fmt``; no samples."""
    traks = []
    trexs = []
    if fmt.video is not None:
        traks.append(_video_trak(fmt.video))
        trexs.append(_trex(VIDEO_TRACK))
    if fmt.audio is not None:
        traks.append(_audio_trak(fmt.audio))
        trexs.append(_trex(AUDIO_TRACK))
    if not traks:
        raise ValueError("a track format needs video or audio")
    # 'cmfc' (CMAF) promises one track per file; muxed audio+video does not claim it.
    brands = [b"iso6", b"mp41"] + ([b"cmfc"] if len(traks) == 1 else [])
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), *brands)
    mvhd = full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, 1000, 0),  # times, timescale, duration (0: fragmented)
        struct.pack(">IH10x", 0x00010000, 0x0100),  # rate 1.0, volume 1.0
        _MATRIX, bytes(24), struct.pack(">I", AUDIO_TRACK + 1),
    )  # fmt: skip
    return ftyp + box(b"moov", mvhd, *traks, box(b"mvex", *trexs))


def _trex(track_id: int) -> bytes:
    return full_box(b"trex", 0, 0, struct.pack(">IIIII", track_id, 1, 0, 0, 0))


def _tkhd(track_id: int, volume: int, width: int, height: int) -> bytes:
    return full_box(
        b"tkhd", 0, 0x000003,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, track_id, 0, 0),
        struct.pack(">8xhhH2x", 0, 0, volume), _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )  # fmt: skip


def _mdia(timescale: int, handler: bytes, name: bytes, media_header: bytes, stsd: bytes) -> bytes:
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, _LANGUAGE_UND, 0))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, handler), name + b"\0")
    dref = full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), stsd),
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    minf = box(b"minf", media_header, box(b"dinf", dref), stbl)
    return box(b"mdia", mdhd, hdlr, minf)


def _video_trak(config: VideoConfig) -> bytes:
    kind = _SAMPLE_ENTRY.get(config.codec)
    if kind is None:
        raise ValueError(f"no MP4 sample entry for video codec {config.codec!r}")
    width, height = config.width & 0xFFFF, config.height & 0xFFFF
    entry = box(
        kind,
        struct.pack(">6xH16xHHIIIH", 1, width, height, 0x00480000, 0x00480000, 0, 1),
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x0018, -1),  # depth, pre_defined
        box(_CONFIG_BOX[config.codec], config.extradata),
    )
    vmhd = full_box(b"vmhd", 0, 1, bytes(8))
    mdia = _mdia(VIDEO_TIMESCALE, b"vide", b"VideoHandler", vmhd, entry)
    return box(b"trak", _tkhd(VIDEO_TRACK, 0, width, height), mdia)


def _descriptor(tag: int, *payload: bytes) -> bytes:
    """An MPEG-4 descriptor with its expandable size field (14496-1 8.3.3)."""
    body = b"".join(payload)
    size, length = len(body), bytearray()
    length.append(size & 0x7F)
    size >>= 7
    while size:
        length.insert(0, 0x80 | (size & 0x7F))
        size >>= 7
    return bytes([tag]) + bytes(length) + body


def _esds(config: AudioConfig) -> bytes:
    decoder_config = _descriptor(
        0x04,
        # objectTypeIndication 0x40 (MPEG-4 audio); streamType 5 (audio) << 2 | upStream 0 | 1
        struct.pack(">BB", 0x40, 0x15),
        (0).to_bytes(3, "big"),  # bufferSizeDB
        struct.pack(">II", 0, 0),  # maxBitrate, avgBitrate: unknown
        _descriptor(0x05, config.extradata),
    )
    sl_config = _descriptor(0x06, b"\x02")  # predefined: MP4
    es = _descriptor(0x03, struct.pack(">HB", AUDIO_TRACK, 0), decoder_config, sl_config)
    return full_box(b"esds", 0, 0, es)


def _audio_trak(config: AudioConfig) -> bytes:
    if config.codec != "aac":
        raise ValueError(f"no MP4 sample entry for audio codec {config.codec!r}")
    channels = config.channels or 2
    # The 16.16 sample-rate field cannot hold 96 kHz and above; the esds carries the truth.
    rate = config.sample_rate if config.sample_rate < 0x10000 else 0
    entry = box(
        b"mp4a",
        struct.pack(">6xH8xHHHHI", 1, channels, 16, 0, 0, rate << 16),
        _esds(config),
    )
    smhd = full_box(b"smhd", 0, 0, bytes(4))
    mdia = _mdia(audio_timescale(config), b"soun", b"SoundHandler", smhd, entry)
    return box(b"trak", _tkhd(AUDIO_TRACK, 0x0100, 0, 0), mdia)
