"""Validate an uploaded file before any transcoding: is it a video streamd can take?

An upload is hostile until proven otherwise. FFmpeg will happily treat a file as an HLS
playlist, a concat list or an image sequence, and those open *other* files and URLs (the
classic "upload a playlist, read /etc/passwd or reach an internal host" attack). So:

1. We sniff the first bytes ourselves and accept only the magic of an allowed container
   (mp4/mov, matroska/webm, flv, mpegts, avi); text (playlists, concat lists, SDP, URLs) and
   everything else is refused before FFmpeg sees the file.
2. FFmpeg opens it with that demuxer named explicitly (no format probing), a
   ``format_whitelist`` of the allowed demuxers (inherited by nested contexts such as AVI's
   GAB2 subtitles), ``protocol_whitelist=file``, and our own ``io_open`` callback that opens
   this one path and refuses every other open, so no demuxer can reach another file or URL.
3. Headers are not trusted: width/height come from decoded frames and must agree with the
   header; the duration comes from the timestamps of the file's last packets (found by a
   seek near the claimed end, then demuxing to EOF, bounded), and must agree with the claim.

Everything FFmpeg raises becomes :class:`VodRejected` with one human sentence.
"""

from __future__ import annotations

import re
import struct
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, BinaryIO

import av
import av.error
from av.container import InputContainer
from av.stream import Disposition
from av.video.stream import VideoStream

__all__ = ["ProbeLimits", "ProbeResult", "VodRejected", "probe"]


@dataclass(frozen=True, slots=True)
class ProbeLimits:
    max_duration_s: float = 6 * 3600
    max_width: int = 7680
    max_height: int = 4320
    max_fps: float = 120.0
    probe_bytes: int = 32 << 20  # FFmpeg probesize
    analyze_s: float = 10.0  # FFmpeg analyzeduration
    decode_budget_s: float = 20.0  # wall time allowed to decode the check frames


@dataclass(frozen=True, slots=True)
class ProbeResult:
    container: str  # the demuxer that matched, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    duration_s: float  # trustworthy (checked against packets), > 0
    width: int  # from decoded frames, not only the header
    height: int
    fps: Fraction | None  # average frame rate, None if unknown
    video_codec: str  # FFmpeg codec name, e.g. "h264"
    audio_codec: str | None
    audio_channels: int | None
    audio_sample_rate: int | None
    bit_rate: int | None


class VodRejected(Exception):
    """The file cannot become a video. str(exc) is one human sentence for the uploader
    (shown in the UI), e.g. "The file is not a video container streamd accepts (mp4, mov,
    mkv, webm, flv, ts, avi)."; `code` is a short machine slug ("format", "no_video",
    "too_long", "too_large", "undecodable", "mismatch", "empty", ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# Sniffed demuxer (its short name, as FFmpeg's av_find_input_format takes it) -> the full
# name FFmpeg reports once opened.
DEMUXERS: dict[str, str] = {
    "mov": "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska": "matroska,webm",
    "flv": "flv",
    "mpegts": "mpegts",
    "avi": "avi",
}
FORMAT_WHITELIST = ",".join(DEMUXERS.values())

_NOT_A_VIDEO = (
    "The file is not a video container streamd accepts (mp4, mov, mkv, webm, flv, ts, avi)."
)
_SNIFF_BYTES = 4096
_MP4_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"}
_TS_PACKET = 188
_CHECK_FRAMES = 5  # decoded frames compared with the header
_MAX_PACKETS_TO_FIRST_FRAME = 600  # a decoder that eats this many packets and gives nothing
_MAX_DECODE_ERRORS = 8  # bad packets tolerated (skipped) before the stream counts as broken
_MAX_TAIL_PACKETS = 100_000  # demuxed from a seek near the end to EOF
_MAX_SEEKS = 40  # bisection steps looking for the last packets
# A header's duration may round, or count an edit list or a last frame's display time.
_DURATION_SLACK_S = 0.5
_DIM_SLACK = 16  # px: coded vs cropped sizes (1088 vs 1080) are not a lie
_MAX_STREAMS = 64
# Text that makes FFmpeg (or a careless reader) open something else. Matched on the start of
# a file after a BOM and whitespace; the allow-list below would refuse it anyway, but the
# uploader deserves a precise reason.
_TEXT_REASONS: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (re.compile(rb"#extm3u", re.I), "The file is an HLS playlist, not a video."),
    (re.compile(rb"ffconcat\s+version", re.I), "The file is a concat list, not a video."),
    (re.compile(rb"file\s", re.I), "The file is a concat list, not a video."),
    (re.compile(rb"v=0\s", re.I), "The file is an SDP description, not a video."),
    (re.compile(rb"<\?xml|<mpd|<smil", re.I), "The file is a manifest, not a video."),
    (re.compile(rb"[a-z][a-z0-9+.-]{1,31}:", re.I), "The file is a link, not a video."),
)
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def probe(path: Path, limits: ProbeLimits = ProbeLimits()) -> ProbeResult:
    """Check `path` and describe it, or raise :class:`VodRejected`. Blocking: run it in a
    worker thread."""
    path = Path(path).resolve()
    try:
        with path.open("rb") as f:
            demuxer = _sniff(f.read(_SNIFF_BYTES))
            mov_claims = _mov_claims(f) if demuxer == "mov" else None
    except OSError as exc:
        raise VodRejected("unreadable", "streamd could not read the uploaded file.") from exc
    opened: list[IO[bytes]] = []
    try:
        with _open(path, demuxer, limits, opened) as container:
            return _check(container, demuxer, limits, mov_claims)
    except VodRejected:
        raise
    except _NestedOpen as exc:
        raise VodRejected(
            "format", "The file refers to other files or URLs, which streamd does not follow."
        ) from exc
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as exc:
        # PyAV's own errors (and ours stashed by its io_open callback) land here; none of
        # them is a bug in the caller, all mean "this file is not usable".
        raise VodRejected(
            "undecodable", "The video could not be read: the file is damaged or incomplete."
        ) from exc
    finally:
        # With a custom io_open FFmpeg leaves closing the files to us.
        for file in opened:
            file.close()


def _sniff(head: bytes) -> str:
    """The demuxer for these first bytes, or VodRejected."""
    if not head:
        raise VodRejected("empty", "The file is empty.")
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    for pattern, reason in _TEXT_REASONS:
        if pattern.match(text):
            raise VodRejected("format", reason)
    if len(head) >= 8 and head[4:8] in _MP4_FIRST_BOXES:
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if _looks_like_ts(head):
        return "mpegts"
    if head.startswith(_IMAGE_MAGIC):
        raise VodRejected("format", "The file is an image, not a video.")
    raise VodRejected("format", _NOT_A_VIDEO)


def _looks_like_ts(head: bytes) -> bool:
    # Sync byte on every packet we can see, at least three of them; M2TS (Blu-ray) has a
    # 4-byte timecode before each packet.
    for offset, size in ((0, _TS_PACKET), (4, _TS_PACKET + 4)):
        positions = range(offset, len(head), size)
        if len(positions) >= 3 and all(head[p] == 0x47 for p in positions):
            return True
    return False


class _NestedOpen(Exception):
    """FFmpeg asked to open something other than the upload itself."""


def _open(path: Path, demuxer: str, limits: ProbeLimits, opened: list[IO[bytes]]) -> InputContainer:
    # "file:" + an absolute path: the name can never read as another protocol, an image2
    # pattern ("img%03d.png" is opened as itself, by us) or an option string.
    name = "file:" + str(path)

    def io_open(url: str, flags: int, options: dict[str, str]) -> BinaryIO:
        if url != name or flags & 2:  # AVIO_FLAG_WRITE
            raise _NestedOpen(url)
        f = path.open("rb")
        opened.append(f)
        return f

    container_options = {
        "format_whitelist": FORMAT_WHITELIST,
        "protocol_whitelist": "file",
        "probesize": str(limits.probe_bytes),
        "analyzeduration": str(int(limits.analyze_s * 1_000_000)),
        "max_streams": str(_MAX_STREAMS),
    }
    if demuxer == "mov":
        container_options["enable_drefs"] = "0"  # external data references: other files
    return av.open(
        name,
        "r",
        format=demuxer,
        # Codec options, used by the decoders find_stream_info opens: no frame bigger than
        # the caps is ever allocated, whatever a header says.
        options={"max_pixels": str(limits.max_width * limits.max_height)},
        container_options=container_options,
        io_open=io_open,
        # Tags in another encoding than UTF-8 are no reason to refuse a video.
        metadata_errors="replace",
    )


def _check(
    container: InputContainer,
    demuxer: str,
    limits: ProbeLimits,
    mov_claims: _MovClaims | None,
) -> ProbeResult:
    # PyAV names the format as we asked for it ("mov") when given one, FFmpeg's full name
    # ("mov,mp4,...") when it probed; either way it must be the demuxer the sniff chose.
    fmt = DEMUXERS[demuxer]
    if container.format.name not in (demuxer, fmt):
        raise VodRejected("format", _NOT_A_VIDEO)
    video = _video_stream(container)
    ctx = video.codec_context
    header_w, header_h = ctx.width, ctx.height
    if mov_claims is not None and mov_claims.size is not None:
        header_w, header_h = mov_claims.size
    fps = video.average_rate
    if fps is not None and fps > limits.max_fps:
        raise VodRejected(
            "too_large",
            f"The video's frame rate ({float(fps):.0f} fps) is above streamd's limit "
            f"({limits.max_fps:g} fps).",
        )
    width, height = _decode_check(container, video, limits, (header_w, header_h))
    claimed = container.duration / 1_000_000 if container.duration else None
    if mov_claims is not None and mov_claims.duration_s is not None:
        claimed = max(claimed or 0.0, mov_claims.duration_s)
    duration = _verified_duration(container, limits, claimed)
    audio = next((s for s in container.streams.audio if s.codec_context is not None), None)
    return ProbeResult(
        container=fmt,
        duration_s=duration,
        width=width,
        height=height,
        fps=fps,
        video_codec=ctx.codec.canonical_name,
        audio_codec=audio.codec_context.codec.canonical_name if audio else None,
        audio_channels=audio.codec_context.channels if audio else None,
        audio_sample_rate=audio.codec_context.sample_rate if audio else None,
        bit_rate=container.bit_rate or None,
    )


def _video_stream(container: InputContainer) -> VideoStream:
    # Cover art is a video stream of one picture; it does not make a file a video.
    moving = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not moving:
        raise VodRejected("no_video", "The file has no video track (audio-only or images).")
    for stream in moving:
        if stream.codec_context is not None:
            return stream
    raise VodRejected("undecodable", "The file's video uses a codec streamd cannot decode.")


def _decode_check(
    container: InputContainer,
    video: VideoStream,
    limits: ProbeLimits,
    header: tuple[int, int],
) -> tuple[int, int]:
    """Decode the first few frames (bounded in packets and wall time); their size is the
    video's size, and it must agree with the header's and fit the caps."""
    deadline = time.monotonic() + limits.decode_budget_s
    # As for find_stream_info's decoders: never allocate a frame bigger than the caps.
    video.codec_context.options = {"max_pixels": str(limits.max_width * limits.max_height)}
    size: tuple[int, int] | None = None
    frames = packets = errors = 0
    for packet in container.demux(video):
        packets += 1
        try:
            decoded = packet.decode()
        except av.error.FFmpegError:
            errors += 1  # a bad packet is skipped, a run of them is a broken stream
            if errors > _MAX_DECODE_ERRORS:
                break
            continue
        for frame in decoded:
            frames += 1
            size = size or (frame.width, frame.height)
        if frames >= _CHECK_FRAMES or time.monotonic() > deadline:
            break
        if frames == 0 and packets > _MAX_PACKETS_TO_FIRST_FRAME:
            break
    if size is None:
        if header[0] > limits.max_width or header[1] > limits.max_height:
            # The decoder refused (max_pixels) before we saw a frame.
            raise _too_large(header)
        raise VodRejected("undecodable", "The video track could not be decoded.")
    if header != (0, 0) and (
        abs(header[0] - size[0]) > _DIM_SLACK or abs(header[1] - size[1]) > _DIM_SLACK
    ):
        raise VodRejected(
            "mismatch",
            f"The file's header says {header[0]}x{header[1]} but its video is "
            f"{size[0]}x{size[1]}; the file is damaged or forged.",
        )
    if size[0] > limits.max_width or size[1] > limits.max_height:
        raise _too_large(size)
    return size


def _too_large(size: tuple[int, int]) -> VodRejected:
    return VodRejected(
        "too_large", f"The video is {size[0]}x{size[1]}, larger than streamd accepts."
    )


@dataclass(slots=True)
class _Tail:
    end: float | None = None  # largest pts + duration seen, in seconds
    packets: int = 0
    eof: bool = False  # reached the end of the file within the budget
    corrupt: bool = False  # a cut-short packet or a read error: the data stops mid-way


def _verified_duration(
    container: InputContainer, limits: ProbeLimits, claimed: float | None
) -> float:
    """The media's real length, from the timestamps of its last packets.

    Seek (backward, to a keyframe) a little before the claimed end, or the cap when nothing
    is claimed, and demux to EOF: the largest pts + duration is the end. A seek past the
    last packet finds nothing (FLV/Matroska land at EOF) and a seek whose data lies beyond
    EOF finds nothing (a truncated MP4's index), so the target is bisected: down while a
    seek finds nothing, up while the data from the landing point runs past the packet
    budget. Seeks are index- or bisection-based in every allowed demuxer (a linear read at
    worst, for FLV or Matroska without an index), and each demux is capped, so the work is
    bounded whatever the header says.
    """
    start = container.start_time / 1_000_000 if container.start_time else 0.0
    span = claimed if claimed else limits.max_duration_s
    lo, hi = 0.0, None  # offsets known to land too early (budget ran out) / to find nothing
    offset = max(span - 1.0, span / 2)
    tail = _Tail()
    for _ in range(_MAX_SEEKS):
        tail = _scan_tail(container, start + offset)
        if tail.eof and tail.packets:
            break
        if tail.packets:  # the data goes on past the budget: the end is later
            if hi is None:
                # Even from (near) the claimed end there is more: the header understates.
                raise _too_long(None, limits) if claimed is None else _more_than_claimed()
            lo = offset
        else:
            hi = offset
        offset = (lo + hi) / 2 if hi is not None else span
        if hi is not None and hi - lo < 0.01:
            break
    else:
        tail = _Tail()
    if tail.end is None or not tail.eof:
        raise VodRejected(
            "undecodable", "The end of the video could not be read: the file is incomplete."
        )
    duration = tail.end - start
    if duration > limits.max_duration_s:
        raise _too_long(duration, limits)
    if claimed and duration < claimed - max(_DURATION_SLACK_S, 0.02 * claimed):
        if tail.corrupt:
            raise VodRejected(
                "undecodable", "The video stops part-way: the file is incomplete or damaged."
            )
        raise VodRejected(
            "mismatch",
            f"The file's header claims {_hms(claimed)} but it holds only {_hms(duration)} "
            "of media; the file is damaged or forged.",
        )
    if duration <= 0:
        raise VodRejected("undecodable", "The video has no length.")
    return duration


def _scan_tail(container: InputContainer, at: float) -> _Tail:
    tail = _Tail()
    try:
        container.seek(int(at * 1_000_000), backward=True)
        for packet in container.demux():
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None or packet.time_base is None:
                continue  # the flush packets at EOF
            tail.packets += 1
            if tail.packets > _MAX_TAIL_PACKETS:
                return tail
            tail.corrupt |= packet.is_corrupt
            packet_end = float((ts + (packet.duration or 0)) * packet.time_base)
            tail.end = packet_end if tail.end is None else max(tail.end, packet_end)
    except av.error.FFmpegError:
        tail.corrupt = True
    tail.eof = True
    return tail


def _more_than_claimed() -> VodRejected:
    return VodRejected(
        "mismatch", "The file holds more media than its header says; it is damaged or forged."
    )


def _too_long(duration: float | None, limits: ProbeLimits) -> VodRejected:
    got = f" ({_hms(duration)})" if duration is not None else ""
    return VodRejected(
        "too_long",
        f"The video is longer{got} than streamd accepts ({_hms(limits.max_duration_s)}).",
    )


def _hms(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


# --- MP4/MOV header claims -------------------------------------------------------------------
# FFmpeg quietly corrects an MP4's header from its sample tables and SPS (a 10-hour mvhd on a
# 5-second file reads as 5 s), which is safe but hides the lie; we read the claims ourselves
# so a forged header is reported as one, like it is for the other containers.


@dataclass(frozen=True, slots=True)
class _MovClaims:
    duration_s: float | None  # mvhd
    size: tuple[int, int] | None  # the video track's sample entry


_MAX_TOP_BOXES = 64
_MAX_MOOV = 64 << 20


def _mov_claims(f: BinaryIO) -> _MovClaims | None:
    """mvhd duration and the video sample entry's size, read from the top-level moov
    (bounded: box headers only until moov, and a moov of at most 64 MiB)."""
    f.seek(0, 2)
    file_size = f.tell()
    offset = 0
    for _ in range(_MAX_TOP_BOXES):
        f.seek(offset)
        header = f.read(16)
        if len(header) < 8:
            return None
        size, kind = struct.unpack(">I4s", header[:8])
        body = 8
        if size == 1 and len(header) == 16:
            size, body = struct.unpack(">Q", header[8:])[0], 16
        elif size == 0:
            size = file_size - offset
        if size < body:
            return None
        if kind == b"moov":
            if size > _MAX_MOOV or offset + size > file_size:
                return None
            f.seek(offset + body)
            return _parse_moov(f.read(size - body))
        offset += size
    return None


def _parse_moov(moov: bytes) -> _MovClaims:
    duration: float | None = None
    size: tuple[int, int] | None = None
    for kind, body in _children(moov):
        if kind == b"mvhd":
            duration = _mvhd_duration(body)
        elif kind == b"trak" and size is None:
            size = _video_entry_size(body)
    return _MovClaims(duration, size)


def _children(buf: bytes) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    offset = 0
    while offset + 8 <= len(buf):
        size, kind = struct.unpack_from(">I4s", buf, offset)
        body = 8
        if size == 1 and offset + 16 <= len(buf):
            size, body = struct.unpack_from(">Q", buf, offset + 8)[0], 16
        elif size == 0:
            size = len(buf) - offset
        if size < body or offset + size > len(buf):
            break
        out.append((kind, buf[offset + body : offset + size]))
        offset += size
    return out


def _mvhd_duration(body: bytes) -> float | None:
    try:
        if body[:1] == b"\x01":
            timescale, duration = struct.unpack_from(">IQ", body, 20)
        else:
            timescale, duration = struct.unpack_from(">II", body, 12)
    except struct.error:
        return None
    if not timescale or duration in (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
        return None  # unknown, e.g. fragmented MP4: FFmpeg's view stands
    return float(duration / timescale)


def _video_entry_size(trak: bytes) -> tuple[int, int] | None:
    boxes = dict(_children(trak))
    mdia = dict(_children(boxes.get(b"mdia", b"")))
    if mdia.get(b"hdlr", b"")[8:12] != b"vide":
        return None
    minf = dict(_children(mdia.get(b"minf", b"")))
    stbl = dict(_children(minf.get(b"stbl", b"")))
    stsd = stbl.get(b"stsd", b"")
    entries = _children(stsd[8:])  # version/flags, entry count
    if not entries:
        return None
    entry = entries[0][1]  # VisualSampleEntry: 24 bytes, then width and height
    if len(entry) < 28:
        return None
    width, height = struct.unpack_from(">HH", entry, 24)
    return (width, height) if width and height else None
