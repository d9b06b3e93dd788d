"""Packaging density: CPU and memory per stream of RTMP ingest + passthrough HLS packaging.

N concurrent ``ffmpeg -re -stream_loop -1 -i obs_like_1080p.flv -c copy -f flv rtmp://...``
publishers (the ~4.5 Mbit/s 1080p30 file of ingest_density.py) send to:

- ``streamd-packager``: bench/packager_server.py — the production ingest path and the
  production packager (source rendition only: no ladder), CMAF segments of 2 s and live
  playlists written to a temporary directory, recording off;
- ``nginx-rtmp-hls``: nginx + Debian's libnginx-mod-rtmp with ``hls on; hls_fragment 2s;``
  (MPEG-TS segments and playlists), the baseline;
- ``streamd`` (optional reference): ingest alone, bench/ingest_server.py, so the packager's own
  share of the CPU shows.

The measurement is ingest_density.py's own (its run_case: warm-up, a window, server CPU from
/proc summed over the server's processes, RSS at the end, real-time checks of every
publisher); this script adds the packager as a system under test and summarises the ratio
against nginx-rtmp-hls. One JSON document on stdout, progress on stderr:

    .venv/bin/python bench/packager_density.py --ns 1,10,50 --seconds 30 \\
        --output bench/results/packager_density.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ingest_density as base
from _util import flv_info, log, median

from db.embedded import EmbeddedPostgres

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SYSTEMS = ("streamd-packager", "nginx-rtmp-hls", "streamd")
DEFAULT_SYSTEMS = ("streamd-packager", "nginx-rtmp-hls", "streamd")


class StreamdPackager(base.Streamd):
    """bench/packager_server.py, spoken to like ingest_server.py."""

    name = "streamd-packager"
    extra_args: tuple[str, ...] = ()
    last_stats: dict[str, Any] = {}  # noqa: RUF012 - read by main() after each case

    def start(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="packager-", dir=self.ctx.workdir))
        self.proc = self.ctx.procs.start(
            [sys.executable, str(BENCH / "packager_server.py"), "--database-url",
             self.ctx.db_url, "--root", str(self.root), "--port", "0", *self.extra_args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.ctx.log_file(self.name),
            cwd=REPO,
        )  # fmt: skip
        self.procs = [self.proc]
        ready = self._read_json(60)
        if not ready.get("ready"):
            raise RuntimeError(f"packager_server did not start: {ready}")
        self.port = int(ready["port"])

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        type(self).last_stats = stats
        return stats

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.root, ignore_errors=True)


class NginxHlsWritable(base.NginxHls):
    """ingest_density.py's nginx-rtmp-hls, with an HLS directory its worker can write.

    Its temporary directories are mode 0700 and owned by root, while nginx's worker runs as
    ``nobody``: there, nginx-rtmp cannot write a single fragment (it logs the failure and
    carries on), so the baseline would skip the work it is the baseline for. Opening the
    directories up makes it write its MPEG-TS fragments and playlists; ``last_hls`` counts them.
    """

    last_hls: dict[str, int] = {}  # noqa: RUF012 - read by main() after each case

    def start(self) -> None:
        super().start()
        prefix = Path(self.procs[0].args[2])  # nginx -p PREFIX
        for directory in (self.ctx.workdir, prefix, prefix / "hls"):
            directory.chmod(0o755)
        self.hls_dir = prefix / "hls"

    def stop(self) -> None:
        fragments = list(self.hls_dir.glob("*.ts"))
        type(self).last_hls = {
            "fragments_on_disk": len(fragments),
            "playlists": len(list(self.hls_dir.glob("*.m3u8"))),
        }
        super().stop()


base.TARGETS[StreamdPackager.name] = StreamdPackager
base.TARGETS[NginxHlsWritable.name] = NginxHlsWritable


def summarize(cases: list[dict[str, Any]], systems: Sequence[str], ns: Sequence[int]) -> Any:
    per_system: dict[str, Any] = {}
    for system in systems:
        rows = {}
        for n in ns:
            valid = [c for c in cases if c["system"] == system and c["n"] == n and c["valid"]]
            rows[str(n)] = {
                "valid_runs": len(valid),
                "cpu_s_per_stream_minute": _median(valid, "cpu_s_per_stream_minute", 4),
                "rss_mb": _median(valid, "rss_mb", 2),
                "pss_mb": _median(valid, "pss_mb", 2),
            }
        lo, hi = str(min(ns)), str(max(ns))
        inc = None
        if lo != hi and rows[lo]["rss_mb"] is not None and rows[hi]["rss_mb"] is not None:
            inc = round((rows[hi]["rss_mb"] - rows[lo]["rss_mb"]) / (max(ns) - min(ns)), 3)
        per_system[system] = {"by_n": rows, "incremental_rss_mb_per_stream": inc}

    def ratio(a: str, b: str, n: int) -> float | None:
        if a not in per_system or b not in per_system:
            return None
        x = per_system[a]["by_n"][str(n)]["cpu_s_per_stream_minute"]
        y = per_system[b]["by_n"][str(n)]["cpu_s_per_stream_minute"]
        return None if x is None or not y else round(x / y, 3)

    ratios = {
        "packager_over_nginx_rtmp_hls_cpu_per_stream": {
            str(n): ratio("streamd-packager", "nginx-rtmp-hls", n) for n in ns
        },
        "packager_over_streamd_ingest_only_cpu_per_stream": {
            str(n): ratio("streamd-packager", "streamd", n) for n in ns
        },
    }
    targets = {
        "cpu_le_nginx_rtmp_hls": {
            n: r is not None and r <= 1.0
            for n, r in ratios["packager_over_nginx_rtmp_hls_cpu_per_stream"].items()
        }
    }
    return {"per_system": per_system, "ratios": ratios, "targets": targets}


def _median(runs: list[dict[str, Any]], key: str, digits: int) -> float | None:
    value = median(c[key] for c in runs if c.get(key) is not None)
    return None if value is None else round(value, digits)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ns", default="1,10,50", help="publisher counts (default 1,10,50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=6.0, help="seconds before measuring")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each case (medians)")
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS), help=", ".join(SYSTEMS))
    parser.add_argument("--no-install", action="store_true", help="no apt-get for nginx")
    parser.add_argument("--output", type=Path, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    args.ns = sorted({int(x) for x in args.ns.split(",")})
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if set(args.systems) - set(SYSTEMS) or min(args.ns) < 1:
        parser.error("bad --systems or --ns")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, base._interrupt)
    tools = base.find_tools(install=not args.no_install)
    media = base.ensure_media(tools.publisher_ffmpeg)
    info = flv_info(media)
    workdir = Path(tempfile.mkdtemp(prefix="streamd-packager-bench-"))
    pg = EmbeddedPostgres(workdir / "pg")
    ctx: base.Context | None = None
    started = time.time()
    try:
        url = pg.acquire()
        keys = asyncio.run(base.seed_database(url, max(args.ns)))
        ctx = base.Context(tools, media, info, url, keys, workdir, args.seconds, args.warmup)
        cases: list[dict[str, Any]] = []
        for repeat in range(args.repeats):
            for n in args.ns:
                for system in args.systems:
                    log(f"run {repeat + 1}/{args.repeats}: {system} with N={n}")
                    StreamdPackager.last_stats = {}
                    case = base.run_case(ctx, system, n)
                    case["repeat"] = repeat
                    if system == "streamd-packager" and StreamdPackager.last_stats:
                        stats = StreamdPackager.last_stats
                        case["packager"] = {
                            k: stats.get(k)
                            for k in ("pipelines", "segments", "segment_bytes",
                                      "dropped_segments", "storage_errors")
                        }  # fmt: skip
                        if stats.get("dropped_segments") or stats.get("storage_errors"):
                            case["valid"] = False
                            case["problems"].append("the packager dropped or failed segments")
                    if system == "nginx-rtmp-hls":
                        case["nginx_hls"] = NginxHlsWritable.last_hls
                        if not NginxHlsWritable.last_hls.get("playlists"):
                            case["valid"] = False
                            case["problems"].append("nginx-rtmp wrote no HLS playlist")
                    cases.append(case)
        document = {
            "benchmark": "packager_density",
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "settings": {
                "ns": args.ns,
                "seconds": args.seconds,
                "warmup_s": args.warmup,
                "repeats": args.repeats,
                "systems": args.systems,
                "streamd_packager": "source rendition only (no ladder), CMAF, 2 s target, "
                "6-segment window, recording off (old segments deleted)",
                "nginx_rtmp_hls": "live on; hls on; hls_fragment 2s; (MPEG-TS)",
            },
            "environment": base.environment(tools, info),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "elapsed_s": round(time.time() - started, 1),
            "definitions": {
                "cpu_s_per_stream_minute": "server-side utime+stime over the window / "
                "(N * window minutes); streamd: its one process (ingest + packager, all "
                "threads); nginx: master + worker",
                "rss_mb": "VmRSS at the end of the window, summed over the server's processes",
                "incremental_rss_mb_per_stream": "(rss at max N - rss at min N) / (max N - min N)",
            },
            **summarize(cases, args.systems, args.ns),
            "cases": cases,
        }
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        if ctx is not None:
            ctx.procs.stop_all()
            ctx.close_logs()
        try:
            pg.release()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(document, indent=2)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
