"""Segment lag: from the publisher sending a segment's last frame to the segment being listed.

One ``ffmpeg -re -readrate_initial_burst 0 -stream_loop -1 -i obs_like_1080p.flv -c copy -f flv``
publisher (ingest_density.py's 1080p30 file, 2 s keyframes) sends to each system in turn:

- ``streamd``: bench/packager_server.py (production ingest + packager, source rendition,
  CMAF, 2 s target, default options: a segment is published when its closing keyframe
  arrives);
- ``streamd-exact-audio``: the same with ``audio_wait`` 1 s (a segment waits for the audio
  up to its cut, so audio boundaries are exact);
- ``streamd-ladder``: the same as ``streamd`` with the transcoded ladder on (DEFAULT_LADDER:
  720p/480p/360p at ``veryfast``, production shedding policy); the source rendition and every
  rung are watched;
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
Reported: median, p90, max, per system. A rung's segment covers the same frames as the source
segment of the same sequence number (seg_N: boundaries are aligned, and checked here by start
time), so its lag is measured from that source segment's last frame: the wall time the rung's
segment appeared minus the wall time the publisher sent the last frame it was made from.

    .venv/bin/python bench/segment_lag.py --seconds 60 --output bench/results/segment_lag.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from _util import cpu_seconds, flv_info, log, machine_cpu_seconds

from config.settings import DEFAULT_LADDER
from db.embedded import EmbeddedPostgres


class StreamdExactAudio(packager_density.StreamdPackager):
    """The packager with ``audio_wait`` 1 s: segments wait for their audio up to the cut."""

    name = "streamd-exact-audio"
    extra_args = ("--audio-wait", "1.0")


class StreamdLadder(packager_density.StreamdPackager):
    """The packager with the transcoded ladder (DEFAULT_LADDER at veryfast)."""

    name = "streamd-ladder"
    extra_args = ("--ladder",)


base.TARGETS[StreamdExactAudio.name] = StreamdExactAudio
base.TARGETS[StreamdLadder.name] = StreamdLadder
SYSTEMS = {
    "streamd": "streamd-packager",
    "streamd-exact-audio": "streamd-exact-audio",
    "streamd-ladder": "streamd-ladder",
    "nginx-rtmp-hls": "nginx-rtmp-hls",
}
RUNGS = tuple(name for name, *_ in DEFAULT_LADDER)
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
    watchers: dict[str, Watcher] = {}
    try:
        target.start()
        if system.startswith("streamd"):
            root = target.root  # type: ignore[attr-defined]

            def finder(rendition: str) -> Callable[[], Path | None]:
                pattern = f"hls/*/b*/{rendition}/live.m3u8"
                return lambda: next(iter(sorted(root.glob(pattern))), None)

            def init(directory: Path) -> bytes:
                return (directory / "init.mp4").read_bytes()

            renditions = ("source", *RUNGS) if system == "streamd-ladder" else ("source",)
            watchers = {name: Watcher(finder(name), init) for name in renditions}
        else:
            hls_dirs = sorted(ctx.workdir.glob("nginx-rtmp-hls-*/hls"))

            def find() -> Path | None:
                path = hls_dirs[-1] / f"{ctx.keys[0]}.m3u8"
                return path if path.exists() else None

            watchers = {"source": Watcher(find, lambda directory: b"")}
        threads = [threading.Thread(target=w.run, daemon=True) for w in watchers.values()]
        for thread in threads:
            thread.start()
        watcher = watchers["source"]
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
        pids = [*target.server_pids(), publisher.pid]
        busy0, own0, wall0 = machine_cpu_seconds()[0], _cpu(pids), time.monotonic()
        time.sleep(seconds)
        busy1, own1 = machine_cpu_seconds()[0], _cpu(pids)
        # CPUs kept busy by anything but the server and the publisher (this script's pollers
        # included): high values mean the lags were measured on a busy machine.
        result["other_load_cores"] = round(
            (busy1 - busy0 - (own1 - own0)) / (time.monotonic() - wall0), 2
        )
        for w in watchers.values():
            w.stop.set()
        for thread in threads:
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
        if len(watchers) > 1:
            stats = target.stats()
            rungs = {
                name: _rung_lags(w, watcher.seen, lambda s: s.wall - (t0 + s.last_dts_s - origin))
                for name, w in watchers.items()
                if name != "source"
            }
            pooled = [lag for r in rungs.values() for lag in r.get("lags_s", [])]
            result["rungs"] = rungs
            result["rungs_lag_median_s"] = round(statistics.median(pooled), 4) if pooled else None
            result["ladder_sheds"] = stats.get("ladder_sheds")
            result["valid"] = (
                result["valid"]
                and all(r["valid"] for r in rungs.values())
                and not stats.get("ladder_sheds")
            )
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for w in watchers.values():
            w.stop.set()
        if publisher is not None:
            ctx.procs.stop([publisher])
        target.stop()
    log(f"{system}: median lag {result.get('lag_median_s')} s over {result.get('segments')}")
    return result


def _cpu(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone already
            total += cpu_seconds(pid)
    return total


def _rung_lags(
    rung: Watcher, source: dict[str, Seen], sent_lag: Callable[[Seen], float]
) -> dict[str, Any]:
    """Lags of one rung's segments, each against the source segment with its sequence number
    (the frames it was made from); a pair whose start times differ is counted, not used."""
    lags, misaligned = [], 0
    for seen in sorted(rung.seen.values(), key=lambda s: s.wall)[1:]:
        twin = source.get(seen.uri)
        if twin is None:
            continue  # the source's first segment (left out) or one listed before watching
        # The rung's first dts is a keyframe's pts; the source's first dts is that keyframe's
        # dts, at most its composition offset (a few frames of B-frame delay) earlier.
        if not 0 <= seen.first_dts_s - twin.first_dts_s <= 0.2:
            misaligned += 1
            continue
        lags.append(sent_lag(twin) + seen.wall - twin.wall)
    return {
        "valid": not rung.errors and len(lags) >= 5 and not misaligned,
        "segments": len(lags),
        "misaligned": misaligned,
        "lag_median_s": round(statistics.median(lags), 4) if lags else None,
        "lag_p90_s": round(sorted(lags)[int(0.9 * (len(lags) - 1))], 4) if lags else None,
        "lag_max_s": round(max(lags), 4) if lags else None,
        "lags_s": [round(x, 4) for x in lags],
        "errors": rung.errors[:5],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--systems", default="streamd,streamd-exact-audio,streamd-ladder,nginx-rtmp-hls"
    )
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
                k: r[k]
                for k in (
                    "valid",
                    "segments",
                    "lag_median_s",
                    "lag_p90_s",
                    "lag_max_s",
                    "rungs_lag_median_s",
                    "ladder_sheds",
                    "other_load_cores",
                )
                if k in r
            }
            | {f"{rung}_lag_median_s": v["lag_median_s"] for rung, v in r.get("rungs", {}).items()}
            for name, r in by_system.items()
        },
        "targets": {
            "streamd_source_median_le_0_1_s": (streamd.get("lag_median_s") or 9) <= 0.1,
            **(
                {
                    "streamd_ladder_rungs_median_le_0_5_s": all(
                        (v["lag_median_s"] or 9) <= 0.5 for v in ladder["rungs"].values()
                    )
                }
                if (ladder := by_system.get("streamd-ladder", {})).get("rungs")
                else {}
            ),
        },
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
