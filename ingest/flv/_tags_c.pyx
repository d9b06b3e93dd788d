# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled fast path of :func:`ingest.flv.tags.parse_video_tag` and ``parse_audio_tag``.

Nearly every message of a publish is a coded frame (30 video and ~47 AAC frames a second);
sequence headers, metadata and everything unusual come a few times per publish. These two
functions build the :class:`MediaPacket` of a plain coded frame in C and hand every other
payload, unchanged, to the Python parser in ``tags.py``, which stays the reference and the
documentation of the rules. A payload takes the fast path only when the reference would
return a ``MediaPacket`` for it, built from the same bytes (``tests/ingest/flv`` runs the tag
tests against both and compares them on random payloads). ``ingest.flv.speedups`` picks these
when they were compiled.

The fast cases:
- legacy video: frame type 1-4, codec id 7 (AVC) or 12 (HEVC), AVCPacketType 1 (NALU);
- E-RTMP video without ModEx or Multitrack: frame type 1-4, CodedFrames or CodedFramesX,
  FourCC avc1/hvc1 (SI24 composition time in CodedFrames) or av01/vp09;
- legacy AAC raw frames (SoundFormat 10, AACPacketType 1);
- E-RTMP audio without ModEx or Multitrack: CodedFrames with FourCC mp4a;
each with at least one byte of frame data (an empty frame is an ``Ignored`` of the reference).
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, uint8_t, uint32_t

from ingest.flv import tags as _reference
from media.types import MediaPacket

cdef object _VIDEO = "video"
cdef object _AUDIO = "audio"
cdef object _new = object.__new__
cdef object _PACKET = MediaPacket


cdef enum:
    CODEC_AVC = 7
    CODEC_HEVC_LEGACY = 12
    AVC_NALU = 1
    PACKET_CODED_FRAMES = 1
    PACKET_CODED_FRAMES_X = 3
    SOUND_FORMAT_EX_HEADER = 9
    SOUND_FORMAT_AAC = 10
    AAC_RAW = 1


cdef inline uint32_t _fourcc(const uint8_t* p) noexcept:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef uint32_t FOURCC_AVC1 = _fourcc(<const uint8_t*>b"avc1")
cdef uint32_t FOURCC_HVC1 = _fourcc(<const uint8_t*>b"hvc1")
cdef uint32_t FOURCC_AV01 = _fourcc(<const uint8_t*>b"av01")
cdef uint32_t FOURCC_VP09 = _fourcc(<const uint8_t*>b"vp09")
cdef uint32_t FOURCC_MP4A = _fourcc(<const uint8_t*>b"mp4a")


cdef inline int _view(object payload, const uint8_t** data, Py_ssize_t* size) except -1:
    """Point at the bytes of a bytes/bytearray payload; 0 for any other type (the reference
    takes those)."""
    if type(payload) is bytes:
        data[0] = <const uint8_t*>PyBytes_AS_STRING(payload)
        size[0] = PyBytes_GET_SIZE(payload)
        return 1
    if type(payload) is bytearray:
        data[0] = <const uint8_t*>PyByteArray_AS_STRING(payload)
        size[0] = PyByteArray_GET_SIZE(payload)
        return 1
    return 0


cdef inline object _packet(
    object kind, object timestamp, int32_t cts, bint key, const uint8_t* data, Py_ssize_t n
):
    # What tags._frame builds, without running MediaPacket's Python __init__: the fields are
    # slots, set directly (track_id 0: the fast cases carry no track id).
    packet = _new(_PACKET)
    packet.kind = kind
    packet.dts_ms = timestamp
    packet.pts_ms = timestamp + cts if cts else timestamp
    packet.keyframe = key
    packet.data = PyBytes_FromStringAndSize(<const char*>data, n)
    packet.track_id = 0
    return packet


cdef inline int32_t _si24(const uint8_t* p) noexcept:
    cdef int32_t value = (<int32_t>p[0] << 16) | (<int32_t>p[1] << 8) | p[2]
    return value - 0x1000000 if value & 0x800000 else value


def parse_video_tag(payload, timestamp):
    """:func:`ingest.flv.tags.parse_video_tag`, with coded frames built in C."""
    cdef const uint8_t* p
    cdef Py_ssize_t n, offset
    cdef int b0, frame_type, packet_type
    cdef uint32_t fourcc
    cdef int32_t cts = 0
    if _view(payload, &p, &n) and n >= 6:
        b0 = p[0]
        if b0 & 0x80:
            frame_type = (b0 >> 4) & 0x07
            packet_type = b0 & 0x0F
            if 1 <= frame_type <= 4 and (
                packet_type == PACKET_CODED_FRAMES or packet_type == PACKET_CODED_FRAMES_X
            ):
                fourcc = _fourcc(p + 1)
                offset = 5
                if fourcc == FOURCC_AVC1 or fourcc == FOURCC_HVC1:
                    if packet_type == PACKET_CODED_FRAMES:
                        if n < 9:
                            return _reference.parse_video_tag(payload, timestamp)
                        cts = _si24(p + 5)
                        offset = 8
                elif fourcc != FOURCC_AV01 and fourcc != FOURCC_VP09:
                    return _reference.parse_video_tag(payload, timestamp)
                return _packet(
                    _VIDEO, timestamp, cts, frame_type == 1 or frame_type == 4,
                    p + offset, n - offset,
                )
        else:
            frame_type = b0 >> 4
            if (
                1 <= frame_type <= 4
                and ((b0 & 0x0F) == CODEC_AVC or (b0 & 0x0F) == CODEC_HEVC_LEGACY)
                and p[1] == AVC_NALU
            ):
                return _packet(
                    _VIDEO, timestamp, _si24(p + 2), frame_type == 1 or frame_type == 4,
                    p + 5, n - 5,
                )
    return _reference.parse_video_tag(payload, timestamp)


def parse_audio_tag(payload, timestamp):
    """:func:`ingest.flv.tags.parse_audio_tag`, with coded frames built in C."""
    cdef const uint8_t* p
    cdef Py_ssize_t n
    cdef int sound_format
    if _view(payload, &p, &n) and n >= 3:
        sound_format = p[0] >> 4
        if sound_format == SOUND_FORMAT_AAC:
            if p[1] == AAC_RAW:
                return _packet(_AUDIO, timestamp, 0, True, p + 2, n - 2)
        elif (
            sound_format == SOUND_FORMAT_EX_HEADER
            and (p[0] & 0x0F) == PACKET_CODED_FRAMES
            and n >= 6
            and _fourcc(p + 1) == FOURCC_MP4A
        ):
            return _packet(_AUDIO, timestamp, 0, True, p + 5, n - 5)
    return _reference.parse_audio_tag(payload, timestamp)
