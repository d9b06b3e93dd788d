"""packager.vod.probe: good files in every allowed container, and hostile ones.

Fixtures are made on the fly with the ffmpeg CLI (2-3 s of 320x240 testsrc2), then cut,
patched or disguised in Python. Every file that names a URL names a loopback HTTP server
that counts requests: it must count none.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import av.error
import imageio_ffmpeg
import pytest

from packager.vod import probe as probe_module
from packager.vod.probe import ProbeLimits, VodRejected, probe

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
TESTSRC = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2"]
SINE = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2"]
H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"]
VP9 = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"]

# name -> (ffmpeg output args, video codec, audio codec)
GOOD: dict[str, tuple[list[str], str, str]] = {
    "mp4": ([*H264, "-c:a", "aac", "-f", "mp4"], "h264", "aac"),
    "mkv": ([*H264, "-c:a", "aac", "-f", "matroska"], "h264", "aac"),
    "webm": ([*VP9, "-c:a", "libopus", "-f", "webm"], "vp9", "opus"),
    "flv": ([*H264, "-c:a", "aac", "-f", "flv"], "h264", "aac"),
    "ts": ([*H264, "-c:a", "aac", "-f", "mpegts"], "h264", "aac"),
    "avi": (["-c:v", "mpeg4", "-g", "25", "-c:a", "libmp3lame", "-f", "avi"], "mpeg4", "mp3"),
}
CONTAINERS = {
    "mp4": "mov,mp4,m4a,3gp,3g2,mj2",
    "mkv": "matroska,webm",
    "webm": "matroska,webm",
    "flv": "flv",
    "ts": "mpegts",
    "avi": "avi",
}


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The good files, made once: one per container, plus an audio-only m4a, one with cover
    art, a PNG, and a faststart (moov first) MP4."""
    d = tmp_path_factory.mktemp("media")
    out: dict[str, Path] = {}
    for name, (args, _, _) in GOOD.items():
        out[name] = d / f"good.{name}"
        ffmpeg(*TESTSRC, *SINE, *args, "-shortest", str(out[name]))
    out["faststart"] = d / "faststart.mp4"
    ffmpeg(*TESTSRC, *H264, "-movflags", "+faststart", str(out["faststart"]))
    out["png"] = d / "frame.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", str(out["png"]))
    out["m4a"] = d / "audio.m4a"
    ffmpeg(*SINE, "-c:a", "aac", str(out["m4a"]))
    out["cover"] = d / "cover.m4a"
    ffmpeg(
        *SINE, "-i", str(out["png"]), "-map", "0", "-map", "1", "-c:a", "aac", "-c:v", "png",
        "-disposition:v", "attached_pic", str(out["cover"]),
    )  # fmt: skip
    return out


@dataclass
class Server:
    url: str
    hits: list[str] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    """A loopback HTTP server that records every request (and serves nothing)."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", hits)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def rejected(path: Path, code: str, limits: ProbeLimits | None = None) -> VodRejected:
    with pytest.raises(VodRejected) as info:
        probe(path, limits or ProbeLimits())
    assert info.value.code == code, str(info.value)
    message = str(info.value)
    assert message.endswith(".") and "Traceback" not in message and "\n" not in message
    return info.value


# --- good files ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GOOD))
def test_good_files_probe(media: dict[str, Path], name: str) -> None:
    result = probe(media[name])
    _, vcodec, acodec = GOOD[name]
    assert result.container == CONTAINERS[name]
    assert (result.width, result.height) == (320, 240)
    assert result.duration_s == pytest.approx(2.0, abs=0.15)
    assert result.fps == Fraction(25)
    assert result.video_codec == vcodec
    assert result.audio_codec == acodec
    assert result.audio_channels == 1
    assert result.audio_sample_rate in (44100, 48000)
    assert result.bit_rate and result.bit_rate > 0


def test_names_are_never_patterns_or_urls(
    media: dict[str, Path], tmp_path: Path, server: Server
) -> None:
    # An image2 pattern, a URL and an option-looking name, holding a real MP4: read as itself.
    for name in ("img%03d.mp4", f"{server.url}:x.mp4".replace("/", "_"), "http:x.mp4"):
        path = tmp_path / name
        shutil.copy(media["mp4"], path)
        assert probe(path).width == 320
    assert server.hits == []


def test_limits(media: dict[str, Path]) -> None:
    rejected(media["mp4"], "too_long", ProbeLimits(max_duration_s=1.0))
    rejected(media["mp4"], "too_large", ProbeLimits(max_width=160))
    rejected(media["mp4"], "too_large", ProbeLimits(max_height=120))
    rejected(media["mp4"], "too_large", ProbeLimits(max_fps=24))
    # Caps below the frame's size: the decoder itself refuses to allocate it (max_pixels).
    rejected(media["mp4"], "too_large", ProbeLimits(max_width=100, max_height=100))


# --- hostile files -------------------------------------------------------------------------


def test_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    rejected(path, "empty")


def test_truncated_mp4_moov_at_end(media: dict[str, Path], tmp_path: Path) -> None:
    data = media["mp4"].read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) * 30 // 100])  # no moov at all
    rejected(path, "undecodable")


def test_truncated_mp4_moov_first(media: dict[str, Path], tmp_path: Path) -> None:
    data = media["faststart"].read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])  # an index to samples that are not there
    rejected(path, "undecodable")


@pytest.mark.parametrize("target", ["file:///etc/passwd", "http"])
def test_hls_playlist_named_mp4(tmp_path: Path, server: Server, target: str) -> None:
    url = f"{server.url}/x.ts" if target == "http" else target
    path = tmp_path / "video.mp4"
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{url}\n#EXT-X-ENDLIST\n")
    assert "playlist" in str(rejected(path, "format"))
    assert server.hits == []


@pytest.mark.parametrize(
    "text",
    [
        "ffconcat version 1.0\nfile '{url}/a.mp4'\nfile '/etc/passwd'\n",
        "file '{url}/a.mp4'\n",  # the concat demuxer's list without its header
        "\ufeff  {url}/a.mp4\n",  # a bare URL, behind a BOM
        "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nm=video 5004 RTP/AVP 96\n",
    ],
)
def test_lists_and_links(tmp_path: Path, server: Server, text: str) -> None:
    path = tmp_path / "video.mp4"
    path.write_text(text.format(url=server.url), encoding="utf-8")
    rejected(path, "format")
    assert server.hits == []


def test_image_named_as_pattern(media: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "img%03d.png"
    shutil.copy(media["png"], path)
    assert "image" in str(rejected(path, "format"))


def test_audio_only(media: dict[str, Path]) -> None:
    rejected(media["m4a"], "no_video")
    rejected(media["cover"], "no_video")  # cover art is a picture, not a video


def test_polyglot_jpeg_then_mp4(media: dict[str, Path], tmp_path: Path) -> None:
    # A JPEG header glued in front of a real MP4 (an "image" that FFmpeg's probing could
    # take for either): not one of our containers' magic, so refused outright.
    path = tmp_path / "photo.mp4"
    jfif = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    path.write_bytes(jfif + media["mp4"].read_bytes())
    rejected(path, "format")


def test_polyglot_ftyp_then_playlist(tmp_path: Path, server: Server) -> None:
    # A real ftyp box, then an HLS playlist: it passes the MP4 sniff, but the MP4 demuxer is
    # named explicitly, so the playlist is never read as one (and there is no moov).
    ftyp = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")
    playlist = f"#EXTM3U\n#EXTINF:10.0,\n{server.url}/x.ts\n#EXTINF:10.0,\nfile:///etc/passwd\n"
    path = tmp_path / "video.mp4"
    path.write_bytes(ftyp + playlist.encode())
    rejected(path, "undecodable")
    assert server.hits == []


def test_polyglot_mp4_with_playlist_appended(
    media: dict[str, Path], tmp_path: Path, server: Server
) -> None:
    # A real MP4 with a playlist after its last box: a video, and the tail is inert.
    path = tmp_path / "video.mp4"
    playlist = f"#EXTM3U\n#EXTINF:10.0,\n{server.url}/x.ts\n"
    path.write_bytes(media["mp4"].read_bytes() + playlist.encode())
    assert probe(path).duration_s == pytest.approx(2.0, abs=0.15)
    assert server.hits == []


# --- lying headers -------------------------------------------------------------------------

_PARENTS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


def _boxes(buf: bytes, start: int, end: int) -> Iterator[tuple[bytes, int]]:
    """(type, offset) of every box of interest in an MP4 (32-bit sizes: ffmpeg's output)."""
    off = start
    while off + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, off)
        yield kind, off
        if kind in _PARENTS:
            yield from _boxes(buf, off + 8, off + size)
        elif kind == b"stsd":
            yield from _boxes(buf, off + 16, off + size)
        off += size


def test_mp4_lying_dimensions(media: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(media["mp4"].read_bytes())
    for kind, off in list(_boxes(data, 0, len(data))):
        if kind == b"avc1":
            struct.pack_into(">HH", data, off + 32, 16384, 16384)
        elif kind == b"tkhd" and struct.unpack_from(">I", data, off + 84)[0]:
            struct.pack_into(">II", data, off + 84, 16384 << 16, 16384 << 16)
    path = tmp_path / "big.mp4"
    path.write_bytes(data)
    assert "16384" in str(rejected(path, "mismatch"))


def test_mp4_lying_duration(media: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(media["mp4"].read_bytes())
    ten_hours = 10 * 3600
    movie_scale = 1
    for kind, off in list(_boxes(data, 0, len(data))):
        if kind in (b"mvhd", b"mdhd"):  # version 0: timescale, duration at +20, +24
            scale = struct.unpack_from(">I", data, off + 20)[0]
            movie_scale = scale if kind == b"mvhd" else movie_scale
            struct.pack_into(">I", data, off + 24, ten_hours * scale)
        elif kind == b"tkhd":
            struct.pack_into(">I", data, off + 28, ten_hours * movie_scale)
    path = tmp_path / "long.mp4"
    path.write_bytes(data)
    assert "10:00:00" in str(rejected(path, "mismatch"))


@pytest.mark.parametrize(
    ("name", "marker", "value"),
    [
        # Matroska Segment Info Duration (ID 0x4489, an 8-byte float in milliseconds)
        ("mkv", b"\x44\x89\x88", struct.pack(">d", 10 * 3600 * 1000.0)),
        # FLV onMetaData "duration" (an AMF0 number in seconds)
        ("flv", b"duration\x00", struct.pack(">d", 10 * 3600.0)),
    ],
)
def test_lying_duration_other_containers(
    media: dict[str, Path], tmp_path: Path, name: str, marker: bytes, value: bytes
) -> None:
    data = bytearray(media[name].read_bytes())
    at = data.index(marker) + len(marker)
    data[at : at + 8] = value
    path = tmp_path / f"long.{name}"
    path.write_bytes(data)
    rejected(path, "mismatch")
    rejected(path, "mismatch", ProbeLimits(max_duration_s=20 * 3600))


# --- the layers behind the sniff -----------------------------------------------------------


def test_open_layers_each_refuse_a_playlist(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the sniff ever fooled, FFmpeg itself still could not follow a playlist: the
    format whitelist refuses the HLS demuxer, and with it lifted, the io_open guard refuses
    the segment's URL."""
    path = (tmp_path / "x.m3u8").resolve()
    path.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{server.url}/x.ts\n#EXT-X-ENDLIST\n"
    )
    opened: list[object] = []
    with pytest.raises(av.error.FFmpegError):
        probe_module._open(path, "hls", ProbeLimits(), opened)  # type: ignore[arg-type]
    monkeypatch.setattr(probe_module, "FORMAT_WHITELIST", "hls")
    with pytest.raises(probe_module._NestedOpen):
        probe_module._open(path, "hls", ProbeLimits(), opened)  # type: ignore[arg-type]
    for f in opened:
        f.close()  # type: ignore[attr-defined]
    assert server.hits == []
