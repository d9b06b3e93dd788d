"""LL-HLS end to end, against ``streamd serve`` on its defaults (LL on) with a one-rung ladder:
the real ffmpeg CLI publishes H.264 with B-frames + AAC over RTMP; the source's and the rung's
live playlists carry every LL-HLS clause (checked by the ``m3u8`` parser), their parts are cut
at the same media times, a blocking request and the preload hint are held and released by the
next part, parts decode, and a player that does not speak LL-HLS (the ffmpeg CLI) plays the
same master URL. Nothing is mocked: embedded PostgreSQL, RTMP and HTTP over loopback."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import httpx
import imageio_ffmpeg
import m3u8
import pytest

from tests.helpers import ServeProcess, cli_env, run_cli, serving
from tests.packager.hls_helpers import boxes

pytestmark = pytest.mark.slow

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
PASSWORD = "correct horse battery staple\n"
FRAME_TICKS = 3000 + 90  # one frame at 30 fps in 90 kHz ticks, plus the ms rounding of FLV


class Live:
    def __init__(self, server: ServeProcess, live_id: int) -> None:
        self.base = f"{server.base_url}/hls/{live_id}"
        self.master_url = f"{self.base}/master.m3u8"

    def variants(self) -> dict[str, str]:
        """Rendition name -> its directory URL."""
        master = m3u8.loads(httpx.get(self.master_url).text)
        return {p.uri.split("/")[1]: f"{self.base}/{p.uri.rsplit('/', 1)[0]}"
                for p in master.playlists}  # fmt: skip


@pytest.fixture(scope="module")
def on_air() -> Iterator[tuple[Live, subprocess.Popen[bytes]]]:
    with tempfile.TemporaryDirectory(prefix="streamd-serve-llhls-") as tmp:
        env = cli_env(
            Path(tmp) / "var",
            STREAMD_HLS_LADDER="360p:640x360@30:600k",
            STREAMD_HLS_LADDER_SHEDDING="false",
            STREAMD_HLS_LADDER_BACKLOG="60",
        )
        made = run_cli("user", "create", "--username", "lena", "--email", "l@example.com",
                       "--password-stdin", "--role", "creator", env=env,
                       stdin=PASSWORD)  # fmt: skip
        assert made.returncode == 0, made.stderr
        live = json.loads(run_cli("live", "create", "--user", "lena", "--title", "ll",
                                  env=env).stdout)  # fmt: skip
        with serving(env) as (server, _log):
            publisher = subprocess.Popen(
                [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
                 "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30",
                 "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "60",
                 "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "60",
                 "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
                 "-c:a", "aac", "-b:a", "96k", "-f", "flv",
                 f"rtmp://127.0.0.1:{server.env['STREAMD_RTMP_PORT']}/live/{live['stream_key']}"],
            )  # fmt: skip
            watched = Live(server, live["id"])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    names = watched.variants()
                except Exception:  # no master yet
                    names = {}
                if len(names) == 2:
                    break
                time.sleep(0.5)
            assert len(names) == 2, names
            time.sleep(7)  # a few segments of both
            try:
                yield watched, publisher
            finally:
                publisher.kill()
                publisher.wait()


def playlist_of(url: str) -> m3u8.M3U8:
    answer = httpx.get(f"{url}/live.m3u8")
    assert answer.status_code == 200
    return m3u8.loads(answer.text)


def test_both_renditions_carry_the_ll_hls_clauses(
    on_air: tuple[Live, subprocess.Popen[bytes]],
) -> None:
    live, _ = on_air
    variants = live.variants()
    assert sorted(variants) == ["360p", "source"]
    for name, url in variants.items():
        playlist = playlist_of(url)
        assert playlist.version == 9
        part_target = playlist.part_inf.part_target
        assert part_target == pytest.approx(0.335)  # 10 frames at 30 fps, rounded up
        control = playlist.server_control
        assert control.can_block_reload == "YES"
        assert control.part_hold_back == pytest.approx(3 * part_target)
        assert control.can_skip_until >= 6 * playlist.target_duration
        complete = [s for s in playlist.segments if s.uri]
        assert all(s.program_date_time is not None for s in complete)
        with_parts = [s for s in playlist.segments if s.parts]
        assert with_parts, f"{name}: no parts listed"
        for segment in with_parts:
            assert segment.parts[0].independent == "YES"
            assert all(p.duration <= part_target for p in segment.parts[:-1])
        hint = playlist.preload_hint
        assert hint.hint_type == "PART" and hint.uri.startswith("part_")
        reports = playlist.rendition_reports
        other = "360p" if name == "source" else "source"
        assert [r.uri for r in reports] == [f"../{other}/live.m3u8"]
        assert reports[0].last_msn is not None and reports[0].last_part is not None


def first_video_pts(part: bytes) -> int:
    """The earliest presentation time of the part's video samples (track 1), in 90 kHz
    ticks: tfdt plus each sample's running decode time and composition offset (trun v1)."""
    for kind, payload in boxes(part):
        if kind != b"moof":
            continue
        for traf_kind, traf in boxes(payload):
            inner = dict(boxes(traf)) if traf_kind == b"traf" else {}
            if not inner or struct.unpack(">I", inner[b"tfhd"][4:8])[0] != 1:
                continue
            decode = int(struct.unpack(">Q", inner[b"tfdt"][4:12])[0])
            trun = inner[b"trun"]
            count = struct.unpack(">I", trun[4:8])[0]
            earliest = None
            for i in range(count):  # duration, size, flags, composition offset
                duration, _, _, offset = struct.unpack(">IIIi", trun[12 + 16 * i : 28 + 16 * i])
                pts = decode + offset
                earliest = pts if earliest is None else min(earliest, pts)
                decode += duration
            assert earliest is not None
            return earliest
    raise AssertionError("no video traf")


def test_parts_start_at_the_same_media_time_in_every_rendition(
    on_air: tuple[Live, subprocess.Popen[bytes]],
) -> None:
    live, _ = on_air
    variants = live.variants()
    source, rung = playlist_of(variants["source"]), playlist_of(variants["360p"])
    rung_parts = {(s.uri, p.uri) for s in rung.segments for p in s.parts}
    common = [p.uri for s in source.segments for p in s.parts
              if any(p.uri == r for _, r in rung_parts)]  # fmt: skip
    assert len(common) >= 6
    for uri in common[-12:]:  # the newest: older parts leave memory as the live goes on
        got = [httpx.get(f"{variants[name]}/{uri}") for name in ("source", "360p")]
        assert [g.status_code for g in got] == [200, 200], uri
        a, b = (first_video_pts(g.content) for g in got)
        # Within a frame, though the source has B-frames and the rung has none.
        assert abs(a - b) <= FRAME_TICKS, (uri, a, b)


def test_a_blocking_request_and_the_hinted_part_are_released_by_the_next_part(
    on_air: tuple[Live, subprocess.Popen[bytes]],
) -> None:
    live, _ = on_air
    url = live.variants()["source"]
    playlist = playlist_of(url)
    hint = playlist.preload_hint.uri  # part_MSN_N.m4s
    msn, index = (int(x) for x in hint.removesuffix(".m4s").split("_")[1:])
    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        held = pool.submit(httpx.get, f"{url}/live.m3u8?_HLS_msn={msn}&_HLS_part={index}",
                           timeout=10)  # fmt: skip
        part = pool.submit(httpx.get, f"{url}/{hint}", timeout=10)
        answer, media = held.result(), part.result()
        waited = time.monotonic() - started
    assert answer.status_code == 200 and media.status_code == 200
    # Released by that part (or the segment's end, when the hint was one past its last).
    released = m3u8.loads(answer.text)
    listed = [p.uri for s in released.segments for p in s.parts]
    assert hint in listed or any(s.uri == f"seg_{msn}.m4s" for s in released.segments)
    assert waited < 3 * released.target_duration
    assert media.content[4:8] == b"moof"
    # The whole rendition so far decodes: init + the listed segments + the parts after them.
    init = httpx.get(f"{url}/init.mp4").content
    body = b"".join(httpx.get(f"{url}/{s.uri}").content for s in released.segments if s.uri)
    tail = [p.uri for p in released.segments[-1].parts] if not released.segments[-1].uri else []
    body += b"".join(httpx.get(f"{url}/{uri}").content for uri in tail)
    with av.open(io.BytesIO(init + body)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 30 * 4


def test_a_player_without_ll_hls_plays_the_same_url(
    on_air: tuple[Live, subprocess.Popen[bytes]],
) -> None:
    live, publisher = on_air
    assert publisher.poll() is None
    played = subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-i", live.master_url, "-t", "4",
         "-map", "0:v:0", "-map", "0:a:0", "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert played.returncode == 0, played.stderr
