"""Segment lag: from the publisher sending a segment's last frame to the segment being listed.

One ``ffmpeg -re -readrate_initial_burst 0 -stream_loop -1 -i obs_like_1080p.flv -c copy -f flv``
publisher (ingest_density.py's 1080p30 file, 2 s keyframes) sends to each system in turn:

- ``streamd``: bench/packager_server.py (production ingest + packager, source rendition,
  CMAF, 2 s target, default options: a segment is published when its closing keyframe
  arrives);
- ``streamd-exact-audio``: the same with ``audio_wait`` 1 s (a segment waits for the audio
  up to its cut, so audio boundaries are exact);
- ``nginx-rtmp-hls``: nginx + libnginx-mod-rtmp with ``hls on; hls_fragment 2s;``.

How the two clocks meet: the publisher reports its progress (``-progress pipe:1``, every
50 ms): the media time it has sent so far, read here with the wall time it was read at.
With ``-re`` media time t is sent at wall time t0 + t; t0 is the smallest (wall - media time)
seen after the first two seconds (a report can only come after what it reports was sent, so
the smallest difference is the closest to the truth; this underestimates lags by at most the
few ms between a send and the report that follows it). A watcher thread polls the media
playlist every 2 ms; when a segment appears, it reads the segment at once and takes the latest
decode timestamp in it (audio or video): its last frame, sent at t0 + that time (less the
server's timestamp origin: the first segment's first dts, 0 for streamd, 0.7 s for
nginx-rtmp's MPEG-TS). The lag of the segment is the wall time it appeared minus that.
Reported: median, p90, max, per system.

    .venv/bin/python bench/segment_lag.py --seconds 60 --output bench/results/segment_lag.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import ingest_density as base
import packager_density  # registers the streamd-packager target
from _util import flv_info, log

from db.embedded import EmbeddedPostgres


class StreamdExactAudio(packager_density.StreamdPackager):
    """The packager with ``audio_wait`` 1 s: segments wait for their audio up to the cut."""

    name = "streamd-exact-audio"
    extra_args = ("--audio-wait", "1.0")


base.TARGETS[StreamdExactAudio.name] = StreamdExactAudio
SYSTEMS = {
    "streamd": "streamd-packager",
    "streamd-exact-audio": "streamd-exact-audio",
    "nginx-rtmp-hls": "nginx-rtmp-hls",
}
POLL_S = 0.002


@dataclass
class Seen:
    uri: str
    wall: float
    first_dts_s: float
    last_dts_s: float
    duration: float


@dataclass
class Watcher:
    """Polls one media playlist; records when each segment first appears."""

    find: Callable[[], Path | None]
    init: Callable[[Path], bytes]
    seen: dict[str, Seen] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        playlist: Path | None = None
        mtime = 0
        while not self.stop.is_set():
            time.sleep(POLL_S)
            playlist = playlist or self.find()
            if playlist is None:
                continue
            try:
                stat = playlist.stat()
                if stat.st_mtime_ns == mtime:
                    continue
                mtime = stat.st_mtime_ns
                text = playlist.read_text()
            except OSError:
                continue
            now = time.time()
            for duration, uri in re.findall(r"#EXTINF:([\d.]+),[^\n]*\n(\S+)", text):
                if uri not in self.seen:
                    self._record(playlist.parent, uri, float(duration), now)

    def _record(self, directory: Path, uri: str, duration: float, now: float) -> None:
        try:
            data = self.init(directory) + (directory / uri).read_bytes()
            with av.open(io.BytesIO(data)) as container:
                dts = [
                    float(p.dts * p.time_base)
                    for p in container.demux()
                    if p.dts is not None and p.size
                ]
        except (OSError, av.FFmpegError, ValueError) as exc:
            self.errors.append(f"{uri}: {exc}")
            return
        self.seen[uri] = Seen(uri, now, min(dts), max(dts), duration)


def _progress(stdout: Any, samples: list[tuple[float, float]]) -> None:
    for raw in stdout:
        line = raw.decode(errors="replace").strip()
        if line.startswith("out_time_us=") and line[12:].lstrip("-").isdigit():
            samples.append((time.time(), int(line[12:]) / 1e6))


def run_system(ctx: base.Context, system: str, seconds: float) -> dict[str, Any]:
    target = base.TARGETS[SYSTEMS[system]](ctx, 1)
    result: dict[str, Any] = {"system": system, "valid": False}
    publisher = None
    watcher: Watcher | None = None
    try:
        target.start()
        if system.startswith("streamd"):
            root = target.root  # type: ignore[attr-defined]

            def find() -> Path | None:
                return next(iter(sorted(root.glob("hls/*/b*/source/live.m3u8"))), None)

            def init(directory: Path) -> bytes:
                return (directory / "init.mp4").read_bytes()
        else:
            hls_dirs = sorted(ctx.workdir.glob("nginx-rtmp-hls-*/hls"))

            def find() -> Path | None:
                path = hls_dirs[-1] / f"{ctx.keys[0]}.m3u8"
                return path if path.exists() else None

            def init(directory: Path) -> bytes:
                return b""

        watcher = Watcher(find, init)
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        samples: list[tuple[float, float]] = []
        publisher = ctx.procs.start(
            [ctx.tools.publisher_ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
             "-nostats", "-progress", "pipe:1", "-stats_period", "0.05",
             "-re", "-readrate_initial_burst", "0", "-stream_loop", "-1", "-i", str(ctx.media),
             "-c", "copy", "-f", "flv", target.url(0)],
            stdout=subprocess.PIPE, stderr=ctx.log_file(f"publisher-{system}"),
        )  # fmt: skip
        reader = threading.Thread(target=_progress, args=(publisher.stdout, samples), daemon=True)
        reader.start()
        time.sleep(seconds)
        watcher.stop.set()
        thread.join(5)
        start = samples[0][0] if samples else 0.0
        steady = [wall - media for wall, media in samples if wall - start > 2.0]
        if not steady or not watcher.seen:
            raise RuntimeError(f"no progress ({len(samples)}) or no segments ({watcher.seen})")
        t0 = min(steady)
        # Both servers keep the publisher's timestamps, nginx-rtmp 0.7 s later (its MPEG-TS
        # delay): the first segment starts with the publisher's first packet (media time 0)
        # and gives the origin. It is left out of the lags (it holds the connection set-up).
        ordered = sorted(watcher.seen.values(), key=lambda s: s.wall)
        origin = ordered[0].first_dts_s
        segments = ordered[1:]
        lags = [s.wall - (t0 + s.last_dts_s - origin) for s in segments]
        result.update(
            valid=not watcher.errors and len(lags) >= 5,
            segments=len(lags),
            segment_duration_median_s=round(statistics.median(s.duration for s in segments), 3),
            lag_median_s=round(statistics.median(lags), 4),
            lag_p90_s=round(sorted(lags)[int(0.9 * (len(lags) - 1))], 4),
            lag_min_s=round(min(lags), 4),
            lag_max_s=round(max(lags), 4),
            lags_s=[round(x, 4) for x in lags],
            progress_samples=len(samples),
            timestamp_origin_s=round(origin, 4),
            clock_jitter_s=round(statistics.median(steady) - t0, 4),
            errors=watcher.errors[:5],
        )
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if watcher is not None:
            watcher.stop.set()
        if publisher is not None:
            ctx.procs.stop([publisher])
        target.stop()
    log(f"{system}: median lag {result.get('lag_median_s')} s over {result.get('segments')}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--systems", default="streamd,streamd-exact-audio,nginx-rtmp-hls")
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    if set(systems) - set(SYSTEMS):
        parser.error(f"systems are {', '.join(SYSTEMS)}")
    signal.signal(signal.SIGTERM, base._interrupt)
    tools = base.find_tools(install=not args.no_install)
    media = base.ensure_media(tools.publisher_ffmpeg)
    info = flv_info(media)
    workdir = Path(tempfile.mkdtemp(prefix="streamd-lag-bench-"))
    pg = EmbeddedPostgres(workdir / "pg")
    ctx: base.Context | None = None
    started = time.time()
    try:
        url = pg.acquire()
        keys = asyncio.run(base.seed_database(url, 1))
        ctx = base.Context(tools, media, info, url, keys, workdir, args.seconds, 0)
        results = [run_system(ctx, system, args.seconds) for system in systems]
    finally:
        if ctx is not None:
            ctx.procs.stop_all()
            ctx.close_logs()
        try:
            pg.release()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    by_system = {r["system"]: r for r in results}
    streamd = by_system.get("streamd", {})
    document = {
        "benchmark": "segment_lag",
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "settings": {"seconds": args.seconds, "systems": systems, "poll_s": POLL_S},
        "environment": base.environment(tools, info),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "definitions": {
            "lag": "wall time the segment was first listed in its media playlist - wall time "
            "the publisher sent the segment's last frame (its latest decode timestamp, audio "
            "or video), mapped through the publisher's -progress reports",
        },
        "summary": {
            name: {
                k: r.get(k) for k in ("valid", "segments", "lag_median_s", "lag_p90_s", "lag_max_s")
            }
            for name, r in by_system.items()
        },
        "targets": {"streamd_source_median_le_0_1_s": (streamd.get("lag_median_s") or 9) <= 0.1},
        "results": results,
        "uses": packager_density.__name__,
    }
    text = json.dumps(document, indent=2)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
