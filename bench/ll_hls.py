"""LL-HLS as viewers get it from ``streamd serve`` on its defaults: part lag, 1,000 held playlist
requests, and glass to glass in hls.js with LL-HLS on against the same live with it off.

1. **Part lag** (source rendition). This script publishes ``obs_like_1080p.flv``
   (ingest_density.py's 1080p30 H.264 4.5 Mbit/s with B-frames + AAC, 2 s keyframes) over RTMP
   itself, with streamd's own sans-IO client (``ingest.rtmp.client``) on a blocking socket,
   each FLV tag when the wall clock reaches its timestamp (as ``ffmpeg -re`` does), noting
   when each video frame left (``sendall`` returned). A client does what an LL-HLS player does:
   a blocking reload for the hinted part, again and again. A part's lag is the wall time the
   response listing it arrived minus the wall time its last frame (in decode order) was sent.
   The same run checks EXT-X-PROGRAM-DATE-TIME: each segment's PDT minus the wall time its
   first frame was sent. Targets: median lag <= 0.1 s, PDT within 50 ms. Run twice: on local
   storage (the default), and with ``STREAMD_STORAGE=s3`` on moto's S3 server in its own
   process (parts come from streamd's memory either way; segments are uploaded).
2. **Held requests**: 1,000 connections each ask for the hinted part's playlist at once
   (``_HLS_msn``/``_HLS_part``); reported: serve's RSS before and while they are held, its CPU
   while they are held, how many came back 200, and the spread between the first and the last
   answer (target: all within one part, 0.334 s). Three repeats.
3. **Glass to glass** (whep_latency.py's method): a 1280x720 "camera" written by this script into
   ffmpeg (x264 veryfast zerolatency, no B-frames, 2 s GOP, AAC) in real time, a numbered mark
   once a second; Chromium's watch page (hls.js) reports when it shows each mark. Once with
   streamd's defaults (LL-HLS on), once with ``STREAMD_HLS_LOW_LATENCY=false``, alternating,
   each on the source (720p) and on a rung (360p) chosen in the page's quality menu. Targets:
   LL median <= 2.0 s (source), <= 3.0 s (rung).

    .venv/bin/python bench/ll_hls.py [--lag-seconds 60] [--g2g-seconds 20] [--rounds 2]
        [--output bench/results/ll_hls.json]

JSON on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from _util import cpu_seconds, emit, log, median, rss_bytes, streamd_cli, streamd_env, wait_until
from ingest_density import ensure_media
from playwright.sync_api import Browser, sync_playwright
from whep_latency import CHROMIUM_ARGS, FFMPEG, FPS, HOOK, Camera, decode_mark

from ingest.rtmp.client import RtmpClient

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "low-latency-pass-19"
TICKS = 90_000
_PART = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"')
_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part_(\d+)_(\d+)\.m4s"')
_PDT_SEG = re.compile(
    r"#EXT-X-PROGRAM-DATE-TIME:(\S+)\n(?:#EXT-X-PART:[^\n]*\n)*#EXTINF:[^\n]*\n(\S+)"
)


@contextlib.contextmanager
def serving(
    tmp: Path, name: str, **settings: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, dict[str, Any]]]:
    env = streamd_env(tmp / name, **settings)
    streamd_cli(env, "user", "create", "--username", "bench", "--email", "bench@example.com",
                "--password-stdin", "--role", "creator", stdin=PASSWORD + "\n")  # fmt: skip
    live = json.loads(streamd_cli(env, "live", "create", "--user", "bench", "--title", name))
    base = f"http://127.0.0.1:{env['STREAMD_HTTP_PORT']}"
    serve = subprocess.Popen([sys.executable, "-m", "streamd", "serve"], env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until("serve", lambda: httpx.get(f"{base}/health").status_code == 200, 60,
                   (httpx.HTTPError,))  # fmt: skip
        live["rtmp"] = f"rtmp://127.0.0.1:{env['STREAMD_RTMP_PORT']}/live/{live['stream_key']}"
        yield serve, base, live
    finally:
        serve.terminate()
        serve.wait(timeout=60)


def flv_tags(path: Path) -> list[tuple[int, int, bytes]]:
    """(type, timestamp ms, payload) of each audio and video tag of an FLV file."""
    data = path.read_bytes()
    pos = int.from_bytes(data[5:9], "big") + 4
    tags = []
    while pos + 11 <= len(data):
        kind, size = data[pos] & 0x1F, int.from_bytes(data[pos + 1 : pos + 4], "big")
        stamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        if kind in (8, 9):
            tags.append((kind, stamp, data[pos + 11 : pos + 11 + size]))
        pos += 15 + size
    return tags


class Publisher:
    """Publishes an FLV file in a loop, each tag at its time; remembers when each video tag
    (by its timestamp on the published timeline) was sent."""

    def __init__(self, url: str, media: Path) -> None:
        host_port, _, key = url.removeprefix("rtmp://").partition("/live/")
        host, _, port = host_port.partition(":")
        self.address, self.key = (host, int(port)), key
        self.tags = flv_tags(media)
        self.sent: dict[int, float] = {}  # video timestamp (ms) -> wall time sent
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import socket

        sock = socket.create_connection(self.address)
        client = RtmpClient()
        sock.sendall(client.data_to_send())
        while not client.handshake.complete:
            client.receive_data(sock.recv(65536))
        client.set_chunk_size(65536)
        client.connect("live")
        client.publish_sequence(self.key)
        client.publish(1, self.key)
        sock.sendall(client.data_to_send())
        time.sleep(0.5)  # the publish is accepted (or the socket closed: sendall raises)
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.recv(65536)
        sock.setblocking(True)
        start, loop_ms = time.time(), self.tags[-1][1] + 33
        loops = 0
        while not self.stop.is_set():
            for kind, stamp, payload in self.tags:
                ts = stamp + loops * loop_ms
                delay = start + ts / 1000 - time.time()
                if delay > 0:
                    time.sleep(delay)
                if kind == 9:
                    client.send_video(1, ts, payload)
                else:
                    client.send_audio(1, ts, payload)
                sock.sendall(client.data_to_send())
                if kind == 9:
                    self.sent[ts] = time.time()
                if self.stop.is_set():
                    break
            loops += 1
        sock.close()


def source_playlist(base: str, live_id: int) -> str:
    """The URL of the live's source media playlist, once it lists a segment."""
    url: str | None = None

    def listed() -> bool:
        nonlocal url
        master = httpx.get(f"{base}/hls/{live_id}/master.m3u8")
        if not master.is_success:
            return False
        names = [line for line in master.text.splitlines() if "/source/" in line]
        url = f"{base}/hls/{live_id}/{names[0]}" if names else None
        return url is not None and "#EXTINF" in httpx.get(url).text

    wait_until("the source playlist", listed, 90, (httpx.HTTPError,))
    assert url is not None
    return url


def video_samples(part: bytes) -> tuple[int, int] | None:
    """Decode times (90 kHz) of the first and the last video sample of an fMP4 fragment."""
    pos = 0
    while pos + 8 <= len(part):
        size, kind = struct.unpack(">I4s", part[pos : pos + 8])
        if kind == b"moof":
            inner = pos + 8
            while inner + 8 <= pos + size:
                tsize, tkind = struct.unpack(">I4s", part[inner : inner + 8])
                if tkind == b"traf":
                    boxes = _children(part, inner + 8, inner + tsize)
                    if struct.unpack(">I", boxes[b"tfhd"][4:8])[0] == 1:
                        first = struct.unpack(">Q", boxes[b"tfdt"][4:12])[0]
                        trun = boxes[b"trun"]
                        count = struct.unpack(">I", trun[4:8])[0]
                        durations = [struct.unpack(">I", trun[12 + 16 * i : 16 + 16 * i])[0]
                                     for i in range(count)]  # fmt: skip
                        return first, first + sum(durations[:-1])
                inner += tsize
        pos += size
    return None


def _children(data: bytes, start: int, end: int) -> dict[bytes, bytes]:
    out = {}
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        out[kind] = data[start + 8 : start + size]
        start += size
    return out


def part_lag(playlist: str, seconds: float, publisher: Publisher) -> dict[str, Any]:
    """Blocking reloads for ``seconds``: when each part was listed, and each segment's PDT."""
    listed: dict[str, float] = {}
    ends: dict[str, float] = {}
    pdts: dict[str, float] = {}
    directory = playlist.rsplit("/", 1)[0]
    with httpx.Client(timeout=10) as client:
        text = client.get(playlist).text
        known = {uri for _, uri in _PART.findall(text)}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            hint = _HINT.search(text)
            assert hint, text
            text = client.get(f"{playlist}?_HLS_msn={hint[1]}&_HLS_part={hint[2]}").text
            now = time.time()
            for _, uri in _PART.findall(text):
                if uri not in known and uri not in listed:
                    listed[uri] = now
                    # Fetched at once: parts leave memory three target durations later.
                    got = video_samples(client.get(f"{directory}/{uri}").content)
                    if got is not None:
                        ends[uri] = got[1] / TICKS
            for stamp, uri in _PDT_SEG.findall(text):
                pdts.setdefault(uri, _parse_pdt(stamp))
        starts = {}
        for uri in pdts:
            got = video_samples(client.get(f"{directory}/{uri}").content)
            if got is not None:
                starts[uri] = got[0] / TICKS
    # The published timeline starts at the first keyframe sent (streamd's output time 0).
    sent = publisher.sent
    origin = min(sent)
    lags = sorted(round(listed[u] - sent[origin + round(ends[u] * 1000)], 4)
                  for u in ends if origin + round(ends[u] * 1000) in sent)  # fmt: skip
    pdt_offsets = sorted(round(pdts[u] - sent[origin + round(starts[u] * 1000)], 4)
                         for u in starts if origin + round(starts[u] * 1000) in sent)  # fmt: skip
    return {
        "parts": len(lags),
        "lag_s": {
            "median": median(lags),
            "p90": lags[int(len(lags) * 0.9)] if lags else None,
            "max": lags[-1] if lags else None,
        },
        "pdt_minus_send_s": {
            "median": median(pdt_offsets),
            "min": pdt_offsets[0],
            "max": pdt_offsets[-1],
            "segments": len(pdt_offsets),
        },
    }


def _parse_pdt(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def _held(host: str, port: int, path: str, n: int) -> tuple[list[float], list[int]]:
    async def one() -> tuple[float, int]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
        at = time.time()
        await reader.read()
        writer.close()
        return at, int(status_line.split()[1])

    results = await asyncio.gather(*(one() for _ in range(n)))
    return [r[0] for r in results], [r[1] for r in results]


def held_requests(playlist: str, pid: int, n: int) -> dict[str, Any]:
    text = httpx.get(playlist).text
    hint = _HINT.search(text)
    assert hint, text
    # One part ahead of the hint: every request is held for about a part.
    msn, part = int(hint[1]), int(hint[2]) + 1
    url = httpx.URL(f"{playlist}?_HLS_msn={msn}&_HLS_part={part}")
    rss_before, cpu_before, started = rss_bytes(pid), cpu_seconds(pid), time.monotonic()
    peak = [rss_before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak.append(rss_bytes(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    answered, statuses = asyncio.run(_held(url.host, url.port or 80, url.raw_path.decode(), n))
    stop.set()
    sampler.join()
    elapsed = time.monotonic() - started
    return {
        "requests": n,
        "ok": sum(1 for s in statuses if s == 200),
        "release_spread_s": round(max(answered) - min(answered), 4),
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_peak_mib": round(max(peak) / 2**20, 1),
        "cpu_cores_while_held": round((cpu_seconds(pid) - cpu_before) / elapsed, 3),
        "held_s": round(elapsed, 3),
    }


def watch(browser: Browser, base: str, live_id: int, quality: str, seconds: float,
          camera: Camera) -> list[float]:  # fmt: skip
    context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 800})
    try:
        context.add_init_script(f"localStorage.setItem('streamd.lowLatency', '0');{HOOK}")
        page = context.new_page()
        page.goto(f"/lives/{live_id}")
        page.wait_for_function("() => window.__marks.length > 0", timeout=90_000)
        page.select_option("select[data-test=quality]", label=quality)
        page.wait_for_function(
            f"() => document.querySelector('[data-test=player]').dataset.level === '{quality}'",
            timeout=30_000,
        )
        time.sleep(6)  # settled on that rendition
        page.evaluate("() => { window.__marks = []; }")
        time.sleep(seconds)
        marks = page.evaluate("() => window.__marks")
    finally:
        context.close()
    latencies = []
    for shown, left, right in marks:
        number = decode_mark(left, right)
        value = camera.latency(shown, number) if number is not None else None
        if value is not None:
            latencies.append(round(value, 3))
    return latencies


def glass_to_glass(tmp: Path, rounds: int, seconds: float) -> dict[str, Any]:
    modes = {"ll_on": {}, "ll_off": {"STREAMD_HLS_LOW_LATENCY": "false"}}
    results: dict[str, dict[str, list[float]]] = {
        mode: {"source": [], "rung": []} for mode in modes
    }
    with sync_playwright() as playwright:
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for round_ in range(rounds):
            order = list(modes) if round_ % 2 == 0 else list(reversed(modes))
            for mode in order:
                with serving(tmp, f"{mode}-{round_}", **modes[mode]) as (_, base, live):
                    publisher = subprocess.Popen(
                        [FFMPEG, "-hide_banner", "-loglevel", "error",
                         "-f", "rawvideo", "-pix_fmt", "gray", "-video_size", "1280x720",
                         "-framerate", str(FPS), "-i", "-",
                         "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                         "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
                         "-bf", "0", "-g", str(2 * FPS), "-keyint_min", str(2 * FPS),
                         "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-b:v", "2500k",
                         "-c:a", "aac", "-b:a", "128k", "-f", "flv", live["rtmp"]],
                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    )  # fmt: skip
                    camera = Camera(publisher.stdin, 1280, 720)
                    camera.thread.start()
                    try:
                        source_playlist(base, live["id"])
                        time.sleep(6)
                        for rendition, label in (("source", "720p"), ("rung", "360p")):
                            got = watch(browser, base, live["id"], label, seconds, camera)
                            results[mode][rendition] += got
                            log(f"round {round_ + 1} {mode} {rendition}: median "
                                f"{median(got)} s over {len(got)}")  # fmt: skip
                    finally:
                        camera.stopped.set()
                        publisher.kill()
                        publisher.wait()
        browser.close()
    return {
        mode: {
            rendition: {"median_s": median(values), "samples": len(values), "values": values}
            for rendition, values in by_rendition.items()
        }
        for mode, by_rendition in results.items()
    }


@contextlib.contextmanager
def moto_s3() -> Iterator[dict[str, str]]:
    """moto's S3 server (the tests' own) in a process, a bucket, and the settings using it."""
    import os

    import boto3
    from _util import free_port

    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        os.environ.setdefault(name, value)
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        wait_until("moto", lambda: bool(client.create_bucket(Bucket="ll-bench")), 30,
                   (Exception,))  # fmt: skip
        yield {"STREAMD_STORAGE": "s3", "STREAMD_S3_BUCKET": "ll-bench",
               "STREAMD_S3_ENDPOINT_URL": endpoint, "STREAMD_S3_REGION": "us-east-1"}  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)


def lag_run(tmp: Path, name: str, media: Path, seconds: float, held: int,
            **settings: str) -> dict[str, Any]:  # fmt: skip
    """Part lag, PDT and (local storage only) held requests against one serve."""
    out: dict[str, Any] = {}
    with serving(tmp, name, **settings) as (serve, base, live):
        publisher = Publisher(live["rtmp"], media)
        publisher.thread.start()
        try:
            playlist = source_playlist(base, live["id"])
            time.sleep(4)
            out["part_lag"] = part_lag(playlist, seconds, publisher)
            log(f"{name}: part lag {out['part_lag']['lag_s']}")
            if held:
                out["held_requests"] = [held_requests(playlist, serve.pid, held) for _ in range(3)]
                log(f"held: {out['held_requests']}")
        finally:
            publisher.stop.set()
            publisher.thread.join(timeout=10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lag-seconds", type=float, default=60)
    parser.add_argument("--held", type=int, default=1000)
    parser.add_argument("--g2g-seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-g2g", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    media = ensure_media(shutil.which("ffmpeg") or FFMPEG)
    report: dict[str, Any] = {"benchmark": "ll_hls"}
    with tempfile.TemporaryDirectory(prefix="streamd-bench-llhls-") as tmp_name:
        tmp = Path(tmp_name)
        local = lag_run(tmp, "lag", media, args.lag_seconds, args.held)
        report["part_lag"] = local["part_lag"]
        report["held_requests"] = local["held_requests"]
        with moto_s3() as s3_settings:
            s3 = lag_run(tmp, "lag-s3", media, args.lag_seconds, 0, **s3_settings)
        report["part_lag_s3"] = s3["part_lag"]
        if not args.skip_g2g:
            report["glass_to_glass"] = glass_to_glass(tmp, args.rounds, args.g2g_seconds)
    report["settings"] = {
        "streamd": "streamd serve with its default settings (LL-HLS on, part target 0.333 s, "
        "default ladder, recording, posters); LL off: STREAMD_HLS_LOW_LATENCY=false",
        "part_lag_publisher": "obs_like_1080p.flv sent in real time by this script over RTMP",
        "g2g_publisher": "1280x720p30 camera, x264 veryfast zerolatency, no B-frames, 2 s GOP",
    }
    emit(report, args.output)


if __name__ == "__main__":
    main()
