"""S3 upload latency: segment closed -> upload complete, streamd's S3Storage vs a plain loop.

Input: a real 4-rendition ladder (1080p source 4.5 Mbit/s, 720p 3, 480p 1.2, 360p 0.7; CMAF,
2 s segments), encoded once by the ffmpeg of the imageio-ffmpeg wheel into
``bench/.cache/s3_ladder/`` (libx264 ultrafast, ~30 s of CPU).

Server: moto's S3 server (``moto_server``, the same one the tests use) in its own process on
loopback, so its CPU does not share the measuring process's GIL.

Each *round* is one "segment closed" instant for all four renditions at once (as a live
ladder's renditions close aligned segments together), repeated every ``--interval`` seconds:

- ``streamd``: what each rendition's writer does with S3Storage: one task per rendition
  (serial within it, concurrent across them, bounded by the storage's thread pool), putting
  the media segment and then the rendition's live playlist (``put_object``: headers per
  kind). Measured: closed -> segment uploaded (``segment``), and closed -> playlist uploaded
  (``listed``: what a player can see).
- ``plain-loop``: the baseline, ``client.put_object`` of the same four segment
  files one after the other in a plain loop (one boto3 client, no playlists). Measured:
  closed -> each put returned.

Rounds alternate between the two (ABAB...) in the same run and against the same server,
so drift and background load hit both alike. Reported: p50/p95 per system, the ratios
streamd/plain-loop, the target (streamd segment p95 <= 1.2 x plain-loop p95), and
``other_load_cores`` (CPUs busy with anything but this process and the S3 server).

    flock /tmp/streamd-bench.lock .venv/bin/python bench/s3_upload.py --rounds 60 \\
        --output bench/results/s3_upload.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import imageio_ffmpeg
from _util import Processes, cpu_seconds, free_port, log, machine_cpu_seconds

from packager.hls.playlists import LivePlaylist, SegmentEntry
from packager.storage.base import put_object
from packager.storage.s3 import S3Options, S3Storage

CACHE = Path(__file__).parent / ".cache" / "s3_ladder"
RUNGS = (("source", "1920x1080", "4500k"), ("720p", "1280x720", "3000k"),
         ("480p", "854x480", "1200k"), ("360p", "640x360", "700k"))  # fmt: skip
BUCKET = "bench-s3-upload"


def make_ladder(seconds: int) -> dict[str, list[bytes]]:
    """{rendition: [init, seg_0, seg_1, ...]} of a real CMAF ladder (cached)."""
    marker = CACHE / f"done-{seconds}"
    if not marker.exists():
        log(f"encoding a {seconds} s 4-rendition ladder into {CACHE} (once)")
        CACHE.mkdir(parents=True, exist_ok=True)
        split = ";".join(
            [f"[0:v]split={len(RUNGS)}" + "".join(f"[i{i}]" for i in range(len(RUNGS)))]
            + [f"[i{i}]scale={size.replace('x', ':')}[o{i}]"
               for i, (_, size, _) in enumerate(RUNGS)]
        )  # fmt: skip
        args = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-t", str(seconds),
                "-filter_complex", split]  # fmt: skip
        for i, (_, _, rate) in enumerate(RUNGS):
            args += ["-map", f"[o{i}]", f"-b:v:{i}", rate, f"-maxrate:v:{i}", rate,
                     f"-bufsize:v:{i}", rate]  # fmt: skip
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-keyint_min", "60",
                 "-sc_threshold", "0", "-f", "hls", "-hls_time", "2", "-hls_segment_type",
                 "fmp4", "-hls_playlist_type", "vod",
                 "-var_stream_map", " ".join(f"v:{i},name:{n}" for i, (n, _, _) in
                                             enumerate(RUNGS)),
                 "-hls_fmp4_init_filename", "init.mp4",
                 "-hls_segment_filename", str(CACHE / "%v" / "seg_%d.m4s"),
                 str(CACHE / "%v" / "index.m3u8")]  # fmt: skip
        subprocess.run(args, check=True)
        marker.touch()
    ladder = {}
    for name, _, _ in RUNGS:
        directory = CACHE / name
        count = len(list(directory.glob("seg_*.m4s")))
        (init_file,) = directory.glob("init*.mp4")  # ffmpeg names it init_N.mp4
        init = init_file.read_bytes()
        ladder[name] = [init] + [(directory / f"seg_{i}.m4s").read_bytes() for i in range(count)]
    return ladder


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values) * 1000, 2),
        "p95_ms": round(pct(values, 0.95) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
        "samples": len(values),
    }


class Streamd:
    """The writers of a live ladder, as packager.hls.rendition does them, on S3Storage."""

    def __init__(self, storage: S3Storage, ladder: dict[str, list[bytes]]) -> None:
        self.storage = storage
        self.ladder = ladder
        self.playlists = {n: LivePlaylist(6, version=7, minimum_target=2) for n in ladder}
        self.sequence = 0

    async def start(self) -> None:
        await asyncio.gather(*(put_object(self.storage, f"hls/1/b/{n}/init.mp4", files[0])
                               for n, files in self.ladder.items()))  # fmt: skip

    async def round(self, index: int, segment: list[float], listed: list[float]) -> None:
        closed = time.perf_counter()
        sequence = self.sequence
        self.sequence += 1

        async def writer(name: str, files: list[bytes]) -> None:
            data = files[1 + index % (len(files) - 1)]
            await put_object(self.storage, f"hls/1/b/{name}/seg_{sequence}.m4s", data)
            segment.append(time.perf_counter() - closed)
            self.playlists[name].add(SegmentEntry(
                sequence, f"seg_{sequence}.m4s", 2.0, False, datetime.now(UTC), "init.mp4",
                len(data),
            ))  # fmt: skip
            text = self.playlists[name].render().encode()
            await put_object(self.storage, f"hls/1/b/{name}/live.m3u8", text)
            listed.append(time.perf_counter() - closed)

        await asyncio.gather(*(writer(n, files) for n, files in self.ladder.items()))


def plain_round(client: Any, ladder: dict[str, list[bytes]], index: int, out: list[float]) -> None:
    closed = time.perf_counter()
    for name, files in ladder.items():
        data = files[1 + index % (len(files) - 1)]
        client.put_object(Bucket=BUCKET, Key=f"plain/{name}/seg_{index}.m4s", Body=data)
        out.append(time.perf_counter() - closed)


async def measure(endpoint: str, ladder: dict[str, list[bytes]], rounds: int,
                  interval: float) -> dict[str, list[float]]:  # fmt: skip
    storage = S3Storage(S3Options(bucket=BUCKET, prefix="streamd", endpoint_url=endpoint,
                                  region="us-east-1"))  # fmt: skip
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    writers = Streamd(storage, ladder)
    await writers.start()
    results: dict[str, list[float]] = {"segment": [], "listed": [], "plain": []}
    for warmup in (True, False):
        count = 4 if warmup else rounds
        seg: list[float] = []
        listed: list[float] = []
        plain: list[float] = []
        for i in range(count):
            started = time.perf_counter()
            if i % 2 == 0:
                await writers.round(i, seg, listed)
            else:
                await asyncio.to_thread(plain_round, client, ladder, i, plain)
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
        if not warmup:
            results = {"segment": seg, "listed": listed, "plain": plain}
    storage.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=60, help="rounds in all (half each)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between rounds")
    parser.add_argument("--seconds", type=int, default=16, help="ladder length to encode")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    ladder = make_ladder(args.seconds)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    procs = Processes()
    port = free_port()
    moto_bin = Path(sys.executable).parent / "moto_server"
    server = procs.start([str(moto_bin), "-H", "127.0.0.1", "-p", str(port)],
                         stderr=subprocess.DEVNULL)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for _ in range(200):
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                time.sleep(0.05)
        log(f"moto_server on {endpoint}; {args.rounds} rounds every {args.interval} s")
        busy0, _ = machine_cpu_seconds()
        own0, moto0, wall0 = cpu_seconds(os.getpid()), cpu_seconds(server.pid), time.monotonic()
        results = asyncio.run(measure(endpoint, ladder, args.rounds, args.interval))
        busy1, _ = machine_cpu_seconds()
        own1, moto1, wall1 = cpu_seconds(os.getpid()), cpu_seconds(server.pid), time.monotonic()
    finally:
        procs.stop_all()
    elapsed = wall1 - wall0
    streamd_seg, streamd_listed, plain = (summary(results[k]) for k in ("segment", "listed",
                                                                         "plain"))  # fmt: skip
    ratio_p95 = round(streamd_seg["p95_ms"] / plain["p95_ms"], 3)
    doc = {
        "benchmark": "s3_upload",
        "what": "segment closed -> upload complete, 4-rendition CMAF ladder, moto_server on "
        "loopback; rounds alternate between the systems",
        "ladder": {
            n: {
                "segments": len(f) - 1,
                "mean_segment_kb": round(sum(map(len, f[1:])) / (len(f) - 1) / 1024, 1),
            }
            for n, f in ladder.items()
        },
        "rounds_each": args.rounds // 2,
        "interval_s": args.interval,
        "systems": {
            "streamd": {"segment": streamd_seg, "listed": streamd_listed},
            "plain-loop": {"segment": plain},
        },
        "ratios": {
            "segment_p50": round(streamd_seg["p50_ms"] / plain["p50_ms"], 3),
            "segment_p95": ratio_p95,
            "listed_p95_vs_plain_segment_p95": round(streamd_listed["p95_ms"] / plain["p95_ms"], 3),
        },
        "target": {"segment_p95_ratio_max": 1.2, "met": ratio_p95 <= 1.2},
        "cpu_cores": {
            "bench_process": round((own1 - own0) / elapsed, 2),
            "moto_server": round((moto1 - moto0) / elapsed, 2),
        },
        "other_load_cores": round(((busy1 - busy0) - (own1 - own0) - (moto1 - moto0)) / elapsed, 2),
        "machine_cores": os.cpu_count(),
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
