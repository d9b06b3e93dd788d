"""Ladder efficiency: CPU-seconds per stream-minute of streamd's transcoded ladder against the
ffmpeg CLI producing the identical ladder from the same RTMP input, in the same run.

One 1080p30 OBS-like publisher (``ffmpeg -re -stream_loop -1 -i obs_like_1080p.flv -c copy -f
flv rtmp://...``, the file bench/ingest_density.py generates into bench/.cache) sends to:

- ``streamd``: this script with ``--serve``: the production ingest path (asyncpg pools,
  PublishGate on an embedded PostgreSQL, RtmpServer, uvloop) whose session consumer runs
  ``packager.ladder.ladder.Ladder`` with DEFAULT_LADDER (720p/480p/360p) at ``--preset``;
  outputs are counted and discarded;
- ``ffmpeg``: ``ffmpeg -listen 1 -i rtmp://... -filter_complex split/scale -map ... -f null -``
  with the same rungs, preset, bitrates/VBV, x264 parameters (no B-frames, IDRs only at source
  keyframes) and the same decoder (2 threads) and scaler (bilinear, 1 thread) settings, each
  rung scaled from the source (streamd's ladder cascades: 480p and 360p from its 720p
  picture); x264 sliced threads as streamd's (``imageio``) or left to ffmpeg
  (``imageio-x264auto``). ``--baselines`` picks the binaries: the imageio-ffmpeg one (same
  x264 core as PyAV's) and/or Debian's ``/usr/bin/ffmpeg``.

For each, after a warm-up, the server process's CPU (utime+stime from /proc), the machine's
(for ``other_load_cores``: CPUs busy with anything but the server and the publisher) and the media
time each rung encoded are read around a window: CPU-s per stream-minute, and the real-time
factor (media seconds encoded per wall second; ~1.0 when keeping up with a live input). One
JSON document goes to stdout; progress to stderr.

    .venv/bin/python bench/ladder_efficiency.py --seconds 60 \\
        --output bench/results/ladder_efficiency.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]

import av  # noqa: E402
import imageio_ffmpeg  # noqa: E402
import ingest_density  # noqa: E402
from _util import (  # noqa: E402
    Processes,
    cpu_seconds,
    flv_info,
    free_port,
    is_listening,
    log,
    machine_cpu_seconds,
)

from config.settings import DEFAULT_LADDER  # noqa: E402
from packager.ladder.codec import X264_PARAMS, x264_threads  # noqa: E402
from packager.options import to_rungs  # noqa: E402
from packager.types import Rung  # noqa: E402

LADDER = to_rungs(DEFAULT_LADDER)
CACHE = BENCH / ".cache"
MEDIA = CACHE / ingest_density.MEDIA_NAME  # made by ingest_density.ensure_media
DEBIAN_FFMPEG = "/usr/bin/ffmpeg"
X264_THREADS = x264_threads()  # RungEncoder's default: sliced threads, one per core (max 4)
REAL_TIME = 0.97  # media seconds per wall second over the window


@dataclasses.dataclass(frozen=True)
class Baseline:
    name: str
    binary: str
    x264_threads: int | None  # sliced threads; None: the CLI's default (auto frame threads)
    note: str


def baselines(publisher: str) -> dict[str, Baseline]:
    return {
        b.name: b
        for b in (
            Baseline("imageio", publisher, X264_THREADS, "identical settings; same x264 core"),
            Baseline("imageio-x264auto", publisher, None, "x264 threads left to ffmpeg"),
            Baseline("debian", DEBIAN_FFMPEG, X264_THREADS, "identical settings; Debian 12"),
        )
    }


_SEI_VERSION = re.compile(rb"x264 - core \d+(?: r\d+ [0-9a-f]+)?")
_SEI_OPTIONS = re.compile(rb"options: ([ -~]+)")


# --- media, versions ---


def x264_sei(data: bytes) -> dict[str, str | None]:
    version = _SEI_VERSION.search(data)
    options = _SEI_OPTIONS.search(data)
    return {
        "version": version.group().decode() if version else None,
        "options": options.group(1).decode() if options else None,
    }


def pyav_x264() -> dict[str, str | None]:
    """The libx264 bundled with PyAV, from the SEI it writes into its first frame."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 64, 64, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    frame = av.VideoFrame(64, 64, "yuv420p")
    frame.pts = 0
    return x264_sei(b"".join(bytes(p) for p in encoder.encode(frame) + encoder.encode(None)))


def binary_versions(ffmpeg: str) -> dict[str, Any]:
    version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, timeout=30)
    sample = subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc2=size=64x64:rate=30", "-frames:v", "1", "-c:v", "libx264", "-f", "h264", "-"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    return {
        "path": ffmpeg,
        "version": version.stdout.splitlines()[0] if version.stdout else None,
        "x264": x264_sei(sample.stdout)["version"],
    }


# --- the ffmpeg CLI ladder ---


def x264_args(rung: Rung, preset: str, threads: int | None = X264_THREADS) -> list[str]:
    """What RungEncoder sets, in ffmpeg CLI words (``threads`` None: x264's automatic count)."""
    rate = rung.video_bitrate
    threading = [] if threads is None else ["-threads", str(threads), "-thread_type", "slice"]
    return [*threading,
        "-an", "-c:v", "libx264", "-preset", preset, "-profile:v", "high",
        "-pix_fmt", "yuv420p", "-fps_mode", "passthrough",
        "-b:v", str(rate), "-maxrate", str(rate * 3 // 2), "-bufsize", str(rate * 2),
        "-x264-params", X264_PARAMS, "-forced-idr", "1", "-force_key_frames", "source",
    ]  # fmt: skip


def scale_filter(rung: Rung) -> str:
    return f"scale={rung.width}:{rung.height}:flags=bilinear"


def ffmpeg_ladder_argv(
    ffmpeg: str, port: int, preset: str, x264_threads: int | None = X264_THREADS
) -> list[str]:
    rungs = LADDER
    graph = ";".join(
        [f"[0:v]split={len(rungs)}" + "".join(f"[s{i}]" for i in range(len(rungs)))]
        + [f"[s{i}]{scale_filter(r)}[v{i}]" for i, r in enumerate(rungs)]
    )
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
            "-stats_period", "1", "-progress", "pipe:1",
            "-threads", "2", "-listen", "1", "-i", f"rtmp://127.0.0.1:{port}/live/k",
            "-filter_threads", "1", "-filter_complex", graph]  # fmt: skip
    for i, rung in enumerate(rungs):
        argv += ["-map", f"[v{i}]", *x264_args(rung, preset, x264_threads), "-f", "null", "-"]
    return argv


def ffmpeg_ladder_options(ffmpeg: str, preset: str, x264_threads: int | None) -> str | None:
    """x264's own option string for the CLI's 720p rung (2 s of the file to an .h264 file),
    to set beside the one streamd's encoder wrote."""
    rung = LADDER[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "720p.h264"
        subprocess.run(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-threads", "2",
             "-t", "2", "-i", str(MEDIA), "-vf", scale_filter(rung),
             *x264_args(rung, preset, x264_threads),
             "-f", "h264", str(out)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        return x264_sei(out.read_bytes())["options"]


# --- one run ---


def publisher_argv(ffmpeg: str, url: str, seconds: float) -> list[str]:
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
            "-stream_loop", "-1", "-i", str(MEDIA), "-c", "copy", "-t", str(seconds),
            "-f", "flv", url]  # fmt: skip


class Progress:
    """Reads ffmpeg's ``-progress`` key=value blocks; keeps the latest media time (s)."""

    def __init__(self, stream: IO[str]) -> None:
        self.media_s = 0.0
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            key, _, value = line.strip().partition("=")
            if key == "out_time_us" and value.lstrip("-").isdigit():
                self.media_s = max(self.media_s, int(value) / 1e6)


def measure_ffmpeg(
    procs: Processes, baseline: Baseline, publisher: str, args: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    argv = ffmpeg_ladder_argv(baseline.binary, port, args.preset, baseline.x264_threads)
    listener = procs.start(argv, stdout=subprocess.PIPE, stderr=None)
    assert listener.stdout is not None
    progress = Progress(io.TextIOWrapper(listener.stdout, encoding="utf-8"))
    deadline = time.monotonic() + 30
    while not is_listening(port):
        if time.monotonic() > deadline or listener.poll() is not None:
            raise RuntimeError("the ffmpeg listener did not start")
        time.sleep(0.05)
    pub = procs.start(publisher_argv(publisher, f"rtmp://127.0.0.1:{port}/live/k", args.seconds))
    time.sleep(args.warmup)
    t0, c0, m0 = time.monotonic(), cpu_seconds(listener.pid), progress.media_s
    load0, busy0, pub0 = os.getloadavg()[0], machine_cpu_seconds()[0], cpu_seconds(pub.pid)
    time.sleep(args.seconds - args.warmup - args.tail)
    t1, c1, m1 = time.monotonic(), cpu_seconds(listener.pid), progress.media_s
    load1, busy1, pub1 = os.getloadavg()[0], machine_cpu_seconds()[0], cpu_seconds(pub.pid)
    pub.wait(timeout=args.seconds + 60)
    listener.wait(timeout=60)
    # The outputs run in lockstep in one process: one media time, one factor for all rungs.
    return {
        **_rates(t1 - t0, c1 - c0, m1 - m0),
        "realtime_factor": {r.name: round((m1 - m0) / (t1 - t0), 3) for r in LADDER},
        "publisher_exit": pub.returncode,
        "listener_exit": listener.returncode,
        "loadavg_1min": [load0, load1],
        "other_load_cores": _other_load(busy1 - busy0, c1 - c0, pub1 - pub0, t1 - t0),
    }


def measure_streamd(procs: Processes, publisher: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    server = procs.start(
        [sys.executable, __file__, "--serve", "--database-url", args.database_url,
         "--port", str(port), "--preset", args.preset,
         *(["--shedding"] if args.shedding else [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
    )  # fmt: skip
    assert server.stdin is not None and server.stdout is not None

    def ask(command: str) -> dict[str, Any]:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(f"{command}\n".encode())
        server.stdin.flush()
        return dict(json.loads(server.stdout.readline()))

    ready = json.loads(server.stdout.readline())
    assert ready.get("ready"), ready
    pub = procs.start(
        publisher_argv(publisher, f"rtmp://127.0.0.1:{port}/live/{args.stream_key}", args.seconds)
    )
    time.sleep(args.warmup)
    s0, c0, load0 = ask("stats"), cpu_seconds(server.pid), os.getloadavg()[0]
    busy0, pub0 = machine_cpu_seconds()[0], cpu_seconds(pub.pid)
    time.sleep(args.seconds - args.warmup - args.tail)
    s1, c1, load1 = ask("stats"), cpu_seconds(server.pid), os.getloadavg()[0]
    busy1, pub1 = machine_cpu_seconds()[0], cpu_seconds(pub.pid)
    pub.wait(timeout=args.seconds + 60)
    time.sleep(2)  # the encoders' last frames
    final = ask("stats")
    server.stdin.write(b"quit\n")
    server.stdin.flush()
    server.wait(timeout=60)
    window = s1["now"] - s0["now"]
    rungs0, rungs1 = s0["ladder"]["rungs"], s1["ladder"]["rungs"]
    media = {n: rungs1[n]["encoded_seconds"] - rungs0[n]["encoded_seconds"] for n in rungs1}
    return {
        # A shed rung encodes less: the ladder's media time is its slowest rung's.
        **_rates(window, c1 - c0, min(media.values()) if final["ladder"]["rungs"] else 0),
        "realtime_factor": {name: round(m / window, 3) for name, m in media.items()},
        "sheds": sum(r["sheds"] for r in final["ladder"]["rungs"].values()),
        "max_queue_depth": final["ladder"]["max_queue_depth"],
        "ladder": final["ladder"],
        "outputs": final["outputs"],
        "x264_options": final["x264_options"],
        "publisher_exit": pub.returncode,
        "loadavg_1min": [load0, load1],
        "other_load_cores": _other_load(busy1 - busy0, c1 - c0, pub1 - pub0, s1["now"] - s0["now"]),
    }


def _other_load(busy_s: float, server_s: float, publisher_s: float, window_s: float) -> float:
    """CPUs kept busy during the window by anything but the measured process and its
    publisher (other work on the machine, this script): high values mean a noisy run."""
    return round((busy_s - server_s - publisher_s) / window_s, 2)


def _rates(window_s: float, cpu_s: float, media_s: float) -> dict[str, float]:
    """CPU per stream-minute: per minute of media transcoded (the same as per wall minute when
    the system keeps real time; a system falling behind on a busy machine does less work per
    wall minute, and is not made to look cheaper by it)."""
    return {
        "window_s": round(window_s, 2),
        "media_s": round(media_s, 2),
        "cpu_s": round(cpu_s, 2),
        "cpu_s_per_stream_minute": round(cpu_s / media_s * 60, 2) if media_s > 0 else math.nan,
        "cpu_s_per_wall_minute": round(cpu_s / window_s * 60, 2),
    }


# --- the streamd server (--serve) ---


def serve_main(args: argparse.Namespace) -> None:
    import logging

    import uvloop

    logging.basicConfig(
        level="WARNING", stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    uvloop.run(_serve(args.database_url, args.port, args.preset, args.shedding))


async def _serve(database_url: str, port: int, preset: str, shedding: bool) -> None:
    from prometheus_client import CollectorRegistry

    from config.settings import Settings
    from db.pools import open_database
    from ingest.gate import PublishGate
    from ingest.metrics import IngestMetrics
    from ingest.server import RtmpLimits, RtmpServer
    from ingest.session import PublishSession
    from media.types import MediaPacket, VideoConfig
    from packager.ladder.ladder import Ladder, LadderMetrics
    from packager.options import PackagerOptions
    from packager.types import LadderItem

    loop = asyncio.get_running_loop()
    settings = Settings(database_url=database_url, rtmp_host="127.0.0.1", rtmp_port=port)
    metrics = LadderMetrics(CollectorRegistry())
    ladders: list[Ladder] = []
    outputs: dict[str, dict[str, int]] = {}
    options: dict[str, str | None] = {}
    tasks: set[asyncio.Task[None]] = set()

    def on_output(rung: str, item: LadderItem) -> None:
        counts = outputs.setdefault(rung, {"packets": 0, "bytes": 0, "keyframes": 0})
        if isinstance(item, MediaPacket):
            if rung not in options:
                options[rung] = x264_sei(item.data)["options"]
            counts["packets"] += 1
            counts["bytes"] += len(item.data)
            counts["keyframes"] += item.keyframe

    def on_session(session: PublishSession) -> None:
        # Without shedding (the default here) a ladder that falls behind on a busy machine
        # lags, as the ffmpeg CLI does, so both do the same work and their CPU compares.
        policy = PackagerOptions.from_settings(settings).ladder_policy  # serve's
        if not shedding:
            policy = dataclasses.replace(policy, queue_packets=10**6, shedding=False)
        ladder = Ladder(
            LADDER, preset, on_output=on_output, loop=loop, metrics=metrics, policy=policy
        )
        ladders.append(ladder)
        sub = session.subscribe("ladder")

        async def consume() -> None:
            async for item in sub:
                if isinstance(item, VideoConfig):
                    ladder.start(item)
                elif isinstance(item, MediaPacket) and item.kind == "video":
                    ladder.push(item)
            ladder.end()
            await ladder.wait_closed()

        task = loop.create_task(consume())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    db = await open_database(database_url, settings)
    gate = PublishGate(db.primary, database_url, settings.rtmp_app)
    await gate.open()
    rtmp = RtmpServer(
        gate, IngestMetrics(CollectorRegistry()), RtmpLimits(idle_timeout=30), on_session
    )
    await rtmp.listen("127.0.0.1", port)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
    )
    _print({"ready": True, "pid": os.getpid(), "port": port})
    try:
        while line := await reader.readline():
            command = line.decode().strip()
            if command == "quit":
                break
            if command == "stats":
                _print({
                    "now": time.monotonic(),
                    "ladder": ladders[-1].stats() if ladders else None,
                    "outputs": outputs,
                    "x264_options": options,
                })  # fmt: skip
    finally:
        await rtmp.close()
        await gate.close()
        for ladder in ladders:
            ladder.end()
        await asyncio.gather(*tasks, return_exceptions=True)
        await db.close()


def _print(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# --- orchestration ---


def seed(url: str) -> str:
    import asyncpg

    from db import lives, users
    from db.migrate import migrate

    async def run() -> str:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            user = await users.create(
                conn, username="bench", email="bench@example.invalid",
                password_hash="bench-not-a-real-hash", role="creator",
            )  # fmt: skip
            live = await lives.create(conn, user_id=int(user["id"]), title="ladder bench")
            return str(live["stream_key"])
        finally:
            await conn.close()

    return asyncio.run(run())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="publish duration per run")
    parser.add_argument("--warmup", type=float, default=8, help="seconds before the window")
    parser.add_argument("--tail", type=float, default=2, help="seconds left out at the end")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs per system")
    parser.add_argument(
        "--baselines",
        default="imageio,imageio-x264auto",
        help="comma list of imageio, imageio-x264auto, debian; the first one gives the ratio",
    )
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    parser.add_argument(
        "--shedding",
        action="store_true",
        help="run streamd's ladder with its production policy (it sheds rungs when behind)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def _median(values: list[float]) -> float:
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> int:
    args = parse_args()
    if args.serve:
        serve_main(args)
        return 0
    from db.embedded import EmbeddedPostgres

    publisher = imageio_ffmpeg.get_ffmpeg_exe()
    known = baselines(publisher)
    chosen = [known[name] for name in args.baselines.split(",")]
    ingest_density.ensure_media(publisher)
    procs = Processes()
    runs: dict[str, list[dict[str, Any]]] = {
        "streamd": [],
        **{f"ffmpeg-{b.name}": [] for b in chosen},
    }
    with tempfile.TemporaryDirectory(prefix="ladder-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        try:
            args.database_url = pg.acquire()
            args.stream_key = seed(args.database_url)
            for repeat in range(args.repeats):
                log(f"run {repeat + 1}/{args.repeats}: streamd")
                runs["streamd"].append(measure_streamd(procs, publisher, args))
                log(f"  streamd {runs['streamd'][-1]['cpu_s_per_stream_minute']} CPU-s/min")
                for baseline in chosen:
                    log(f"run {repeat + 1}/{args.repeats}: ffmpeg ({baseline.name})")
                    result = measure_ffmpeg(procs, baseline, publisher, args)
                    runs[f"ffmpeg-{baseline.name}"].append(result)
                    log(f"  ffmpeg-{baseline.name} {result['cpu_s_per_stream_minute']} CPU-s/min")
        finally:
            procs.stop_all()
            pg.release()

    # Runs where streamd shed a rung (only with --shedding) did less work: not comparable.
    comparable = {k: [r for r in v if not r.get("sheds")] for k, v in runs.items()}
    per_minute = {
        k: _median([r["cpu_s_per_stream_minute"] for r in v]) for k, v in comparable.items()
    }
    first = f"ffmpeg-{chosen[0].name}"
    ratio = per_minute["streamd"] / per_minute[first]
    streamd_rtf = {
        name: _median([r["realtime_factor"][name] for r in runs["streamd"]])
        for name in runs["streamd"][0]["realtime_factor"]
    }
    sheds = sum(r["sheds"] for r in runs["streamd"])
    real_time = {
        k: sum(min(r["realtime_factor"].values()) >= REAL_TIME for r in v) for k, v in runs.items()
    }
    result = {
        "benchmark": "ladder_efficiency",
        "what": "CPU-seconds per stream-minute, one 1080p30 RTMP source -> DEFAULT_LADDER",
        "media": {"file": MEDIA.name, **dataclasses.asdict(flv_info(MEDIA))},
        "ladder": {
            "rungs": [dataclasses.asdict(r) for r in LADDER],
            "preset": args.preset,
            "x264_params": X264_PARAMS,
            "scaler": "swscale bilinear, 1 thread per rung; streamd cascades (480p and 360p "
            "from its 720p picture), the ffmpeg CLI scales every rung from the source",
            "decoder_threads": 2,
        },
        "baselines": {
            f"ffmpeg-{b.name}": {"binary": b.binary, "x264_threads": b.x264_threads, "note": b.note}
            for b in chosen
        },
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "repeats": args.repeats,
        "cpu_s_per_stream_minute": {k: round(v, 2) for k, v in per_minute.items()},
        "ratio_streamd_over_ffmpeg": round(ratio, 3),
        "ratios": {k: round(per_minute["streamd"] / v, 3) for k, v in per_minute.items()},
        # Each streamd run against the baseline run right after it (same machine load, roughly).
        "paired_ratios": [
            round(a["cpu_s_per_stream_minute"] / b["cpu_s_per_stream_minute"], 3)
            for a, b in zip(runs["streamd"], runs[first], strict=True)
        ],
        "cpu_s_per_wall_minute": {
            k: _median([r["cpu_s_per_wall_minute"] for r in v]) for k, v in runs.items()
        },
        "realtime_factor": {
            "streamd": streamd_rtf,
            **{
                k: _median([min(r["realtime_factor"].values()) for r in v])
                for k, v in runs.items()
                if k != "streamd"
            },
        },
        "runs_in_real_time": {k: f"{n}/{len(runs[k])}" for k, n in real_time.items()},
        "streamd_sheds": sheds,
        "loadavg_1min_during_runs": {
            k: [round(sum(r["loadavg_1min"]) / 2, 1) for r in v] for k, v in runs.items()
        },
        "other_load_cores": {k: [r["other_load_cores"] for r in v] for k, v in runs.items()},
        "targets": {
            "ratio_at_most_1": ratio <= 1.0,
            # Every run, every rung at >= 0.97x real time, nothing shed.
            "streamd_real_time": real_time["streamd"] == len(runs["streamd"]) and sheds == 0,
        },
        "x264_options": {
            "streamd_720p": runs["streamd"][-1]["x264_options"].get("720p"),
            **{
                f"{b.name}_720p": ffmpeg_ladder_options(b.binary, args.preset, b.x264_threads)
                for b in chosen
            },
        },
        "versions": {
            "pyav": av.__version__,
            "pyav_ffmpeg_libraries": {
                k: ".".join(map(str, v)) for k, v in av.library_versions.items()
            },
            "pyav_x264": pyav_x264()["version"],
            "ffmpeg_binaries": {b.binary: binary_versions(b.binary) for b in chosen},
            "publisher": binary_versions(publisher)["version"],
            "python": platform.python_version(),
        },
        "environment": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "platform": platform.platform(),
        },
        "runs": runs,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return 0


def _cpu_model() -> str | None:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


if __name__ == "__main__":
    sys.exit(main())
