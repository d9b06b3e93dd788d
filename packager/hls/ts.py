"""MPEG-TS media segments (ISO/IEC 13818-1) for H.264/HEVC video and AAC audio.

The option for old players; CMAF is the default. Each segment starts with a PAT and a PMT and
is self-contained, as HLS asks; continuity counters run on across segments of a rendition.
Video goes to Annex B (start codes, an access unit delimiter, the parameter sets again before
every keyframe); AAC frames get ADTS headers built from the AudioSpecificConfig. PCR rides on
the video PID (the audio PID when there is no video), 0.7 s behind the decode times.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterator

from media.avc import AvcDecoderConfigurationRecord
from media.hevc import HevcDecoderConfigurationRecord
from media.types import AudioConfig, MediaPacket, VideoConfig
from packager.hls.segment import Segment, TrackFormat

PMT_PID = 0x1000
VIDEO_PID = 0x100
AUDIO_PID = 0x101
TS_CODECS = ("h264", "hevc")
_STREAM_TYPES = {"h264": 0x1B, "hevc": 0x24}
_AAC_ADTS = 0x0F
_PTS_OFFSET = 63_000  # 0.7 s at 90 kHz: PCR = dts, PES timestamps ahead of it
_TS_MASK = (1 << 33) - 1
_START_CODE = b"\x00\x00\x00\x01"
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc32_mpeg2(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


class TsMuxer:
    """MPEG-TS segments of one rendition."""

    extension = ".ts"
    content_type = "video/mp2t"

    def __init__(self) -> None:
        self._cc: dict[int, int] = {}
        self._fmt: TrackFormat | None = None
        self._tables: tuple[bytes, bytes] = (b"", b"")  # PAT, PMT sections
        self._param_sets = b""
        self._nal_length = 4
        self._adts = b""

    def init_segment(self, fmt: TrackFormat) -> None:
        return None  # TS segments carry their own tables

    def media_segment(self, segment: Segment) -> bytes:
        if segment.fmt != self._fmt:
            self._configure(segment.fmt)
        out = [self._psi_packets()]
        pcr_pid = VIDEO_PID if segment.fmt.video is not None else AUDIO_PID
        merged = heapq.merge(segment.video, segment.audio, key=lambda p: p.dts_ms)
        for packet in merged:
            pid = VIDEO_PID if packet.kind == "video" else AUDIO_PID
            if pid == VIDEO_PID:
                pes = _pes(0xE0, self._annex_b(packet), packet.pts_ms, packet.dts_ms, video=True)
            else:
                pes = _pes(0xC0, self._adts_frame(packet.data), packet.pts_ms, None, video=False)
            pcr = (packet.dts_ms * 90) & _TS_MASK if pid == pcr_pid else None
            out.append(self._packets(pid, pes, pcr, packet.keyframe and pid == VIDEO_PID))
        return b"".join(out)

    # --- configuration ---

    def _configure(self, fmt: TrackFormat) -> None:
        self._fmt = fmt
        streams = []
        if fmt.video is not None:
            if fmt.video.codec not in _STREAM_TYPES:
                raise ValueError(f"MPEG-TS segments cannot carry {fmt.video.codec}")
            streams.append((_STREAM_TYPES[fmt.video.codec], VIDEO_PID))
            self._param_sets, self._nal_length = _parameter_sets(fmt.video)
        if fmt.audio is not None:
            streams.append((_AAC_ADTS, AUDIO_PID))
            self._adts = _adts_fixed(fmt.audio)
        pcr_pid = VIDEO_PID if fmt.video is not None else AUDIO_PID
        pat = _section(0x00, 1, struct.pack(">HH", 1, 0xE000 | PMT_PID))
        es = b"".join(struct.pack(">BHH", kind, 0xE000 | pid, 0xF000) for kind, pid in streams)
        pmt = _section(0x02, 1, struct.pack(">HH", 0xE000 | pcr_pid, 0xF000) + es)
        self._tables = (pat, pmt)

    def _psi_packets(self) -> bytes:
        # pointer_field 0, the section, then 0xFF stuffing to the end of the packet.
        return b"".join(
            self._header(pid, True, False) + (b"\x00" + table).ljust(184, b"\xff")
            for pid, table in zip((0, PMT_PID), self._tables, strict=True)
        )

    # --- payloads ---

    def _annex_b(self, packet: MediaPacket) -> bytes:
        assert self._fmt is not None and self._fmt.video is not None
        hevc = self._fmt.video.codec == "hevc"
        nals = list(_split_nals(packet.data, self._nal_length))
        types = [((n[0] >> 1) & 0x3F) if hevc else (n[0] & 0x1F) for n in nals if n]
        aud_type, sps_type = (35, 33) if hevc else (9, 7)
        parts = []
        if aud_type not in types[:1]:
            parts.append(_START_CODE + (b"\x46\x01\x50" if hevc else b"\x09\xf0"))
        if packet.keyframe and sps_type not in types:
            parts.append(self._param_sets)
        parts.extend(_START_CODE + nal for nal in nals)
        return b"".join(parts)

    def _adts_frame(self, frame: bytes) -> bytes:
        length = len(frame) + 7
        fixed = self._adts
        header = (0xFF, 0xF1, fixed[0], fixed[1] | (length >> 11), (length >> 3) & 0xFF,
                  ((length & 7) << 5) | 0x1F, 0xFC)  # fmt: skip
        return bytes(header) + frame

    # --- packetisation ---

    def _header(self, pid: int, start: bool, adaptation: bool) -> bytes:
        cc = self._cc.get(pid, 0)
        self._cc[pid] = (cc + 1) & 0x0F
        control = 0x30 if adaptation else 0x10
        return struct.pack(">BHB", 0x47, (0x4000 if start else 0) | pid, control | cc)

    def _packets(self, pid: int, pes: bytes, pcr: int | None, random_access: bool) -> bytes:
        out = bytearray()
        view = memoryview(pes)
        pos, first = 0, True
        while pos < len(pes) or first:
            body = b""
            if first and (pcr is not None or random_access):
                body = bytes([(0x40 if random_access else 0) | (0x10 if pcr is not None else 0)])
                if pcr is not None:
                    body += struct.pack(">IH", pcr >> 1, ((pcr & 1) << 15) | 0x7E00)
            adaptation = 1 + len(body) if body else 0
            remaining = len(pes) - pos
            if remaining < 184 - adaptation:  # the last packet: fill it with stuffing
                adaptation = 184 - remaining
                body = (body or b"\x00").ljust(adaptation - 1, b"\xff") if adaptation > 1 else b""
            take = 184 - adaptation
            out += self._header(pid, first, adaptation > 0)
            if adaptation:
                out += bytes([adaptation - 1]) + body
            out += view[pos : pos + take]
            pos += take
            first = False
        return bytes(out)


def _section(table_id: int, table_ext: int, body: bytes) -> bytes:
    """A PSI section (PAT/PMT): header, body and CRC."""
    length = 5 + len(body) + 4
    head = struct.pack(">BHHBBB", table_id, 0xB000 | length, table_ext, 0xC1, 0, 0)
    section = head + body
    return section + struct.pack(">I", crc32_mpeg2(section))


def _timestamp(prefix: int, value: int) -> bytes:
    value &= _TS_MASK
    return struct.pack(
        ">BHH",
        (prefix << 4) | ((value >> 29) & 0x0E) | 1,
        ((value >> 14) & 0xFFFE) | 1,
        ((value << 1) & 0xFFFE) | 1,
    )


def _pes(stream_id: int, payload: bytes, pts_ms: int, dts_ms: int | None, *, video: bool) -> bytes:
    pts = pts_ms * 90 + _PTS_OFFSET
    if dts_ms is not None and dts_ms != pts_ms:
        header = _timestamp(0x3, pts) + _timestamp(0x1, dts_ms * 90 + _PTS_OFFSET)
        flags = 0xC0
    else:
        header = _timestamp(0x2, pts)
        flags = 0x80
    size = 3 + len(header) + len(payload)
    # Video PES may exceed 64 KiB: a length of 0 means "unbounded" (allowed for video only).
    length = 0 if video or size > 0xFFFF else size
    return (
        struct.pack(">3sBHBBB", b"\x00\x00\x01", stream_id, length, 0x84, flags, len(header))
        + header
        + payload
    )


def _split_nals(data: bytes, length_size: int) -> Iterator[bytes]:
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        yield data[pos : pos + size]
        pos += size


def _parameter_sets(config: VideoConfig) -> tuple[bytes, int]:
    """Annex B parameter sets to repeat before keyframes, and the NAL length size."""
    if config.codec == "h264":
        avc = AvcDecoderConfigurationRecord.parse(config.extradata)
        nals = [*avc.sps, *avc.sps_ext, *avc.pps]
        length = avc.nal_length_size
    else:
        hevc = HevcDecoderConfigurationRecord.parse(config.extradata)
        nals = [n for kind in (32, 33, 34) for n in hevc.nal_units(kind)]
        length = hevc.nal_length_size
    return b"".join(_START_CODE + n for n in nals), length


def _adts_fixed(config: AudioConfig) -> bytes:
    """Bytes 3 and 4 of every ADTS header of this stream (profile, rate, channels)."""
    asc = config.extradata
    object_type = asc[0] >> 3
    index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7)
    channels = (asc[1] >> 3) & 0x0F
    if object_type in (5, 29) or object_type > 4 or object_type == 0:
        object_type = 2  # HE-AAC is signalled implicitly: an AAC LC core in ADTS
    if index >= len(_AAC_RATES):
        rate = config.sample_rate
        index = min(range(len(_AAC_RATES)), key=lambda i: abs(_AAC_RATES[i] - rate))
    if channels == 0:
        channels = min(config.channels or 2, 7)
    return bytes((((object_type - 1) << 6) | (index << 2) | (channels >> 2), (channels & 3) << 6))
