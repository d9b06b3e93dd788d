"""Ingest density: CPU and memory per RTMP publisher, streamd against nginx-rtmp and ffmpeg.

N concurrent ``ffmpeg -re -stream_loop -1 -i obs_like_1080p.flv -c copy -f flv rtmp://...``
publishers (a ~4.5 Mbit/s 1080p30 H.264/AAC file generated once into bench/.cache) send to:

- ``streamd``: bench/ingest_server.py, the production ingest path (pools, PublishGate with its
  advisory locks, RtmpServer, one consumer per session that discards every item), on uvloop;
- ``nginx-rtmp``: nginx with Debian's libnginx-mod-rtmp, ``live on``, one worker, HLS off;
- ``nginx-rtmp-hls``: the same with ``hls on`` (the usual nginx-rtmp HLS set-up);
- ``ffmpeg-listen``: one ``ffmpeg -listen 1 -i rtmp://... -c copy -f null -`` per stream;
- ``streamd-ladder-coalescing``: ``streamd`` with the read coalescing ``streamd serve`` uses
  when the transcoded ladder is on (``LADDER_COALESCE_S``, 25 ms instead of 100 ms).

For each N, after a warm-up, the server side's CPU time (utime+stime from /proc, summed over
its processes) and RSS are read around a measurement window. The publishers' real-time speed is
checked two ways: bytes each server socket received (tcp_info) and bytes each publisher read from
its file, both against the file's own byte rate. One JSON document goes to stdout; progress to
stderr. Run from the repository root:

    .venv/bin/python bench/ingest_density.py --ns 1,10,50 --seconds 30 > result.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import asyncpg
import imageio_ffmpeg
from _util import (
    FlvInfo,
    Processes,
    TcpConn,
    cpu_seconds,
    cpu_times,
    established,
    flv_info,
    free_port,
    is_listening,
    log,
    machine_cpu_seconds,
    median,
    process_tree,
    pss_bytes,
    read_chars,
    rss_bytes,
)

from db import lives, users
from db.embedded import EmbeddedPostgres
from db.migrate import migrate
from ingest.server import LADDER_COALESCE_S

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CACHE = BENCH / ".cache"
MEDIA_NAME = "obs_like_1080p.flv"
MEDIA_SECONDS = 30
SYSTEMS = ("streamd", "nginx-rtmp", "ffmpeg-listen", "nginx-rtmp-hls", "streamd-ladder-coalescing")
RTMP_MODULE_CANDIDATES = (
    Path("/usr/lib/nginx/modules/ngx_rtmp_module.so"),
    Path("/usr/share/nginx/modules/ngx_rtmp_module.so"),
)
APT_PACKAGES = ("nginx-light", "libnginx-mod-rtmp", "ffmpeg")
REALTIME_MIN_SPEED = 0.95  # a publisher below this share of real time did not keep up
MB = 1024 * 1024


# --- tools and media ---


@dataclass(frozen=True, slots=True)
class Tools:
    publisher_ffmpeg: str
    baseline_ffmpeg: str
    baseline_ffmpeg_note: str
    nginx: str | None
    rtmp_module: Path | None


def first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return f"unavailable ({exc})"
    return ((done.stdout or done.stderr).strip().splitlines() or ["?"])[0]


def find_tools(install: bool) -> Tools:
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )
    module = next((p for p in RTMP_MODULE_CANDIDATES if p.exists()), None)
    system_ffmpeg = shutil.which("ffmpeg")
    if (nginx is None or module is None or system_ffmpeg is None) and install:
        if os.geteuid() != 0:
            log("nginx/libnginx-mod-rtmp/ffmpeg missing and not root: cannot apt-get install")
        else:
            log(f"installing the baselines with apt-get: {' '.join(APT_PACKAGES)}")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", *APT_PACKAGES], check=True, env=env, timeout=900
            )
            return find_tools(install=False)
    publisher = imageio_ffmpeg.get_ffmpeg_exe()
    if system_ffmpeg is not None:
        note = f"{system_ffmpeg} (the ffmpeg on PATH)"
    else:
        note = "imageio-ffmpeg binary (no ffmpeg on PATH; Debian's is not installed)"
    return Tools(publisher, system_ffmpeg or publisher, note, nginx, module)


def ensure_media(ffmpeg: str) -> Path:
    path = CACHE / MEDIA_NAME
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    log(f"generating {path} ({MEDIA_SECONDS} s of 1080p30 H.264 4.5 Mbit/s + AAC 160k)")
    partial = path.with_suffix(".partial.flv")
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(MEDIA_SECONDS),
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4500k", "-maxrate", "4500k",
         "-bufsize", "9000k", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
         "-profile:v", "high", "-bf", "2", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "160k", "-ar", "48000", "-ac", "2",
         "-f", "flv", str(partial)],
        check=True, timeout=900,
    )  # fmt: skip
    partial.rename(path)
    return path


def publisher_argv(ffmpeg: str, media: Path, url: str) -> list[str]:
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
            "-re", "-stream_loop", "-1", "-i", str(media),
            "-c", "copy", "-f", "flv", url]  # fmt: skip


def listener_argv(ffmpeg: str, port: int) -> list[str]:
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
            "-listen", "1", "-i", f"rtmp://127.0.0.1:{port}/live/k",
            "-c", "copy", "-f", "null", "-"]  # fmt: skip


# --- database ---


async def seed_database(url: str, count: int) -> list[str]:
    """Migrate, then create one creator and ``count`` lives; return their stream keys."""
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        user = await users.create(
            conn, username="bench", email="bench@example.invalid",
            password_hash="bench-not-a-real-hash", role="creator",
        )  # fmt: skip
        rows = [
            await lives.create(conn, user_id=int(user["id"]), title=f"bench {i}")
            for i in range(count)
        ]
    finally:
        await conn.close()
    return [str(r["stream_key"]) for r in rows]


# --- the systems under test ---


class Target:
    """One system under test for one case: its servers, their ports and processes."""

    name = ""

    def __init__(self, ctx: Context, n: int) -> None:
        self.ctx = ctx
        self.n = n
        self.procs: list[subprocess.Popen[Any]] = []

    @property
    def log_name(self) -> str:
        """The server side's log file in the work dir (its tail is reported on failure)."""
        return f"{self.name}-{self.n}"

    def start(self) -> None:
        raise NotImplementedError

    def url(self, i: int) -> str:
        raise NotImplementedError

    def ports(self) -> list[int]:
        raise NotImplementedError

    def server_pids(self) -> list[int]:
        return [pid for p in self.procs for pid in process_tree(p.pid)]

    def publishing(self, conns: list[TcpConn]) -> int:
        """How many publishes are in progress (connections that received media)."""
        return sum(1 for c in conns if c.bytes_received > 64 * 1024)

    def stats(self) -> dict[str, Any]:
        return {}

    def dead(self) -> str | None:
        for proc in self.procs:
            if proc.poll() is not None:
                return f"{self.name} server pid {proc.pid} exited with {proc.returncode}"
        return None

    def stop(self) -> None:
        self.ctx.procs.stop(self.procs)


class Streamd(Target):
    name = "streamd"
    extra_args: tuple[str, ...] = ()

    def start(self) -> None:
        self.proc = self.ctx.procs.start(
            [sys.executable, str(BENCH / "ingest_server.py"), "--database-url", self.ctx.db_url,
             "--port", "0", *self.extra_args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.ctx.log_file(self.log_name),
            cwd=REPO,
        )  # fmt: skip
        self.procs = [self.proc]
        ready = self._read_json(30)
        if not ready.get("ready"):
            raise RuntimeError(f"ingest_server did not start: {ready}")
        self.port = int(ready["port"])

    def _read_json(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise RuntimeError(f"ingest_server did not answer within {timeout:.0f}s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"ingest_server exited ({self.proc.poll()}); see its log")
        result: dict[str, Any] = json.loads(line)
        return result

    def url(self, i: int) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{self.ctx.keys[i]}"

    def ports(self) -> list[int]:
        return [self.port]

    def publishing(self, conns: list[TcpConn]) -> int:
        return int(self.stats()["sessions"])

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stats\n")
        self.proc.stdin.flush()
        return self._read_json(10)

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.close()
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log(f"ingest_server did not quit cleanly: {exc!r}")
        super().stop()


class Nginx(Target):
    name = "nginx-rtmp"
    hls = False

    def start(self) -> None:
        tools = self.ctx.tools
        if tools.nginx is None or tools.rtmp_module is None:
            raise RuntimeError("nginx or its RTMP module is not installed (see --install)")
        self.port = free_port()
        prefix = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.ctx.workdir))
        hls = ""
        if self.hls:
            (prefix / "hls").mkdir()
            hls = f"hls on; hls_path {prefix / 'hls'}; hls_fragment 2s;"
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"load_module {tools.rtmp_module};\n"
            "worker_processes 1;\ndaemon off;\nmaster_process on;\nerror_log stderr warn;\n"
            f"pid {prefix / 'nginx.pid'};\nevents {{}}\n"
            f"rtmp {{ server {{ listen 127.0.0.1:{self.port}; chunk_size 4096;\n"
            f"  application live {{ live on; record off; {hls} }} }} }}\n"
        )
        self.procs = [
            self.ctx.procs.start(
                [tools.nginx, "-p", str(prefix), "-c", str(conf), "-e", "stderr"],
                stderr=self.ctx.log_file(self.log_name),
            )
        ]
        wait_for(lambda: is_listening(self.port), 15, f"{self.name} listening", self.dead)
        wait_for(lambda: len(self.server_pids()) >= 2, 15, "nginx worker", self.dead)

    def url(self, i: int) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{self.ctx.keys[i]}"

    def ports(self) -> list[int]:
        return [self.port]


class StreamdLadderCoalescing(Streamd):
    """Ingest with the read coalescing ``streamd serve`` uses when the ladder is on."""

    name = "streamd-ladder-coalescing"
    extra_args = ("--coalesce-s", str(LADDER_COALESCE_S))


class NginxHls(Nginx):
    name = "nginx-rtmp-hls"
    hls = True


class FfmpegListen(Target):
    name = "ffmpeg-listen"

    def start(self) -> None:
        self.port_list = [free_port() for _ in range(self.n)]
        log_file = self.ctx.log_file(self.log_name)
        for port in self.port_list:
            self.procs.append(
                self.ctx.procs.start(
                    listener_argv(self.ctx.tools.baseline_ffmpeg, port), stderr=log_file
                )
            )
        wait_for(
            lambda: all(is_listening(p) for p in self.port_list), 20 + self.n,
            f"{self.n} ffmpeg listeners", self.dead,
        )  # fmt: skip

    def url(self, i: int) -> str:
        return f"rtmp://127.0.0.1:{self.port_list[i]}/live/k"

    def ports(self) -> list[int]:
        return self.port_list


TARGETS: dict[str, type[Target]] = {
    t.name: t for t in (Streamd, StreamdLadderCoalescing, Nginx, NginxHls, FfmpegListen)
}


# --- one case: a system with N publishers ---


@dataclass
class Context:
    tools: Tools
    media: Path
    media_info: FlvInfo
    db_url: str
    keys: list[str]
    workdir: Path
    seconds: float
    warmup: float
    procs: Processes = field(default_factory=Processes)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def log_file(self, name: str) -> IO[bytes]:
        fh = (self.workdir / f"{name}.log").open("ab")
        self._logs.append(fh)
        return fh

    def tail(self, name: str, lines: int = 5) -> list[str]:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text.strip().splitlines()[-lines:]

    def close_logs(self) -> None:
        for fh in self._logs:
            fh.close()


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, dead: Callable[[], str | None]
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if (why := dead()) is not None:
            raise RuntimeError(f"waiting for {what}: {why}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


@dataclass
class Snapshot:
    t: float
    server_cpu: float
    server_sys: float
    machine: tuple[float, float]  # (busy, steal) seconds
    publisher_cpu: float
    publisher_read: list[int]
    conns: dict[int, int]  # server socket's peer port -> bytes received
    stats: dict[str, Any]


def snapshot(target: Target, publishers: Sequence[subprocess.Popen[Any]]) -> Snapshot:
    conns = established(target.ports())
    times = [cpu_times(pid) for pid in target.server_pids()]
    return Snapshot(
        t=time.monotonic(),
        server_cpu=sum(u + s for u, s in times),
        server_sys=sum(s for _, s in times),
        machine=machine_cpu_seconds(),
        publisher_cpu=sum(cpu_seconds(p.pid) for p in publishers),
        publisher_read=[read_chars(p.pid) for p in publishers],
        conns={c.peer_port: c.bytes_received for c in conns},
        stats=target.stats(),
    )


def run_case(ctx: Context, system: str, n: int) -> dict[str, Any]:
    target = TARGETS[system](ctx, n)
    publishers: list[subprocess.Popen[Any]] = []
    result: dict[str, Any] = {"system": system, "n": n, "valid": False, "problems": []}
    problems: list[str] = result["problems"]
    try:
        target.start()
        result["rss_idle_mb"] = round(sum(rss_bytes(p) for p in target.server_pids()) / MB, 2)
        pub_log = ctx.log_file(f"publishers-{system}-{n}")
        for i in range(n):
            publishers.append(
                ctx.procs.start(
                    publisher_argv(ctx.tools.publisher_ffmpeg, ctx.media, target.url(i)),
                    stderr=pub_log,
                )
            )

        def dead() -> str | None:
            died = [p for p in publishers if p.poll() is not None]
            if died:
                codes = sorted({p.returncode for p in died})
                return f"{len(died)} of {n} publishers exited (codes {codes})"
            return target.dead()

        wait_for(
            lambda: target.publishing(established(target.ports())) >= n,
            30 + n, f"{n} publishes on {system}", dead,
        )  # fmt: skip
        sleep_watching(ctx.warmup, dead)
        before = snapshot(target, publishers)
        sleep_watching(ctx.seconds, dead)
        after = snapshot(target, publishers)
        rss = sum(rss_bytes(pid) for pid in target.server_pids())
        result["pss_mb"] = round(sum(pss_bytes(pid) for pid in target.server_pids()) / MB, 2)
        if (why := dead()) is not None:
            problems.append(why)
        result.update(measure(ctx, target, n, before, after, rss, problems))
        result["valid"] = not problems
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        ctx.procs.stop(publishers)
        target.stop()
    if not result["valid"]:
        result["log_tail"] = {
            "server": ctx.tail(target.log_name),
            "publishers": ctx.tail(f"publishers-{system}-{n}"),
        }
    status = "ok" if result["valid"] else f"INVALID: {'; '.join(problems)}"
    log(
        f"{system} N={n}: cpu/stream-min={result.get('cpu_s_per_stream_minute')} "
        f"rss={result.get('rss_mb')} MB speed(min)={result.get('server_rx_speed_min')} {status}"
    )
    return result


def sleep_watching(seconds: float, dead: Callable[[], str | None]) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if (why := dead()) is not None:
            raise RuntimeError(why)
        time.sleep(min(1.0, left))


def measure(
    ctx: Context, target: Target, n: int, before: Snapshot, after: Snapshot, rss: int,
    problems: list[str],
) -> dict[str, Any]:  # fmt: skip
    window = after.t - before.t
    rate = ctx.media_info.size / ctx.media_info.duration_s  # file bytes per second of media
    rx = [
        (after.conns[peer] - before.conns[peer]) / window / rate
        for peer in after.conns
        if peer in before.conns
    ]
    if len(rx) != n:
        problems.append(f"{len(rx)} server connections for {n} publishers")
    read = [
        (b - a) / window / rate
        for a, b in zip(before.publisher_read, after.publisher_read, strict=True)
    ]
    server_cpu = after.server_cpu - before.server_cpu
    out: dict[str, Any] = {
        "window_s": round(window, 2),
        "server_processes": len(target.server_pids()),
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_sys_share": round((after.server_sys - before.server_sys) / server_cpu, 3)
        if server_cpu
        else None,
        "cpu_s_per_stream_minute": round(server_cpu / (n * window / 60), 4),
        "rss_mb": round(rss / MB, 2),
        "publishers_cpu_s_per_stream_minute": round(
            (after.publisher_cpu - before.publisher_cpu) / (n * window / 60), 4
        ),
        "other_load_cores": round(
            (
                (after.machine[0] - before.machine[0])
                - server_cpu
                - (after.publisher_cpu - before.publisher_cpu)
            )
            / window,
            2,
        ),
        "steal_cores": round((after.machine[1] - before.machine[1]) / window, 2),
        "server_rx_speed_min": round(min(rx), 3) if rx else None,
        "server_rx_speed_median": round(median(rx) or 0, 3) if rx else None,
        "publisher_read_speed_min": round(min(read), 3) if read else None,
        "publisher_read_speed_median": round(median(read) or 0, 3) if read else None,
    }
    out["realtime"] = bool(rx) and min(rx) >= REALTIME_MIN_SPEED
    if not out["realtime"]:
        problems.append(
            f"publishers did not keep real time (slowest at {out['server_rx_speed_min']}x)"
        )
    if after.stats:
        payload = after.stats["bytes_in"] - before.stats["bytes_in"]
        out["streamd"] = {
            "sessions": after.stats["sessions"],
            "media_payload_mbit_s_per_stream": round(payload * 8 / window / n / 1e6, 3),
            "consumer_queued": after.stats["queued"],
            "consumer_dropped": after.stats["dropped"],
        }
        if after.stats["sessions"] != n:
            problems.append(f"streamd has {after.stats['sessions']} sessions for {n} publishers")
        if after.stats["dropped"]:
            problems.append(f"the discarding consumer dropped {after.stats['dropped']} items")
    return out


# --- the whole run ---


def summarize(cases: list[dict[str, Any]], systems: Sequence[str], ns: Sequence[int]) -> Any:
    per_system: dict[str, Any] = {}
    for system in systems:
        rows: dict[str, Any] = {}
        for n in ns:
            runs = [c for c in cases if c["system"] == system and c["n"] == n]
            valid = [c for c in runs if c["valid"]]
            rows[str(n)] = {
                "runs": len(runs),
                "valid_runs": len(valid),
                "cpu_s_per_stream_minute": _median_of(valid, "cpu_s_per_stream_minute", 4),
                "rss_mb": _median_of(valid, "rss_mb", 2),
                "pss_mb": _median_of(valid, "pss_mb", 2),
                "publishers_cpu_s_per_stream_minute": _median_of(
                    valid, "publishers_cpu_s_per_stream_minute", 4
                ),
                "server_rx_speed_min": min(
                    (c["server_rx_speed_min"] for c in runs if c.get("server_rx_speed_min")),
                    default=None,
                ),
            }
            if len(valid) < len(runs):
                rows[str(n)]["problems"] = [p for c in runs for p in c["problems"]]
        lo, hi = str(min(ns)), str(max(ns))
        incremental = None
        if lo != hi and rows[lo]["rss_mb"] is not None and rows[hi]["rss_mb"] is not None:
            incremental = round((rows[hi]["rss_mb"] - rows[lo]["rss_mb"]) / (max(ns) - min(ns)), 3)
        incremental_pss = None
        if lo != hi and rows[lo]["pss_mb"] is not None and rows[hi]["pss_mb"] is not None:
            incremental_pss = round(
                (rows[hi]["pss_mb"] - rows[lo]["pss_mb"]) / (max(ns) - min(ns)), 3
            )
        per_system[system] = {
            "by_n": rows,
            "incremental_rss_mb_per_stream": incremental,
            "incremental_pss_mb_per_stream": incremental_pss,
        }

    ratios: dict[str, Any] = {}
    for ours, base in itertools.product(
        ("streamd", "streamd-ladder-coalescing"), ("nginx-rtmp", "nginx-rtmp-hls", "ffmpeg-listen")
    ):
        if ours in per_system and base in per_system:
            ratios[f"{ours}_over_{base}_cpu_per_stream"] = {
                str(n): _ratio(
                    per_system[ours]["by_n"][str(n)]["cpu_s_per_stream_minute"],
                    per_system[base]["by_n"][str(n)]["cpu_s_per_stream_minute"],
                )
                for n in ns
            }
    targets: dict[str, Any] = {}
    if "streamd" in per_system:
        cpu_ratios = ratios.get("streamd_over_nginx-rtmp_cpu_per_stream", {})
        targets["cpu_le_nginx_rtmp"] = {
            n: r is not None and r <= 1.0 for n, r in cpu_ratios.items()
        }
        inc = per_system["streamd"]["incremental_rss_mb_per_stream"]
        targets["incremental_rss_le_2mb"] = inc is not None and inc <= 2.0
    return {"per_system": per_system, "ratios": ratios, "targets": targets}


def _median_of(runs: list[dict[str, Any]], key: str, digits: int) -> float | None:
    value = median(c[key] for c in runs)
    return None if value is None else round(value, digits)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def environment(tools: Tools, media: FlvInfo) -> dict[str, Any]:
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), "?",
    )  # fmt: skip
    module = first_line(["dpkg-query", "-W", "-f", "${Package} ${Version}", "libnginx-mod-rtmp"])
    return {
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "publisher_ffmpeg": f"imageio-ffmpeg {tools.publisher_ffmpeg}: "
        f"{first_line([tools.publisher_ffmpeg, '-version'])}",
        "baseline_ffmpeg": f"{tools.baseline_ffmpeg_note}: "
        f"{first_line([tools.baseline_ffmpeg, '-version'])}",
        "nginx": first_line([tools.nginx, "-v"]) if tools.nginx else None,
        "nginx_rtmp_module": module if tools.rtmp_module else None,
        "media": {
            "file": f"bench/.cache/{MEDIA_NAME}",
            "duration_s": round(media.duration_s, 3),
            "bytes": media.size,
            "bitrate_mbit_s": round(media.bitrate_bps / 1e6, 3),
            "video_tags": media.video_tags,
            "audio_tags": media.audio_tags,
        },
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ns", default="1,10,50", help="publisher counts (default 1,10,50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each case (medians)")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"subset of {','.join(SYSTEMS)}"
    )
    parser.add_argument(
        "--no-install", action="store_true",
        help="do not apt-get install missing nginx/libnginx-mod-rtmp/ffmpeg (root only)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    args.ns = sorted({int(x) for x in args.ns.split(",")})
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown or not args.systems or min(args.ns) < 1 or args.repeats < 1:
        parser.error(f"bad --systems/--ns/--repeats ({', '.join(sorted(unknown))})")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)  # also when started with SIGINT ignored (`cmd &`)
    tools = find_tools(install=not args.no_install)
    media = ensure_media(tools.publisher_ffmpeg)
    info = flv_info(media)
    workdir = Path(tempfile.mkdtemp(prefix="streamd-ingest-bench-"))
    pg = EmbeddedPostgres(workdir / "pg")
    ctx: Context | None = None
    started = time.time()
    loadavg_at_start = Path("/proc/loadavg").read_text().split()[:3]
    try:
        log(f"starting an embedded PostgreSQL in {workdir / 'pg'}")
        url = pg.acquire()
        keys = asyncio.run(seed_database(url, max(args.ns)))
        ctx = Context(tools, media, info, url, keys, workdir, args.seconds, args.warmup)
        cases: list[dict[str, Any]] = []
        for repeat in range(args.repeats):
            for n in args.ns:
                for system in args.systems:
                    log(f"run {repeat + 1}/{args.repeats}: {system} with N={n}")
                    case = run_case(ctx, system, n)
                    case["repeat"] = repeat
                    cases.append(case)
        document = {
            "benchmark": "ingest_density",
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "settings": {
                "ns": args.ns,
                "seconds": args.seconds,
                "warmup_s": args.warmup,
                "repeats": args.repeats,
                "systems": args.systems,
            },
            "environment": environment(tools, info),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "elapsed_s": round(time.time() - started, 1),
            "loadavg_at_start": loadavg_at_start,
            "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
            "definitions": {
                "cpu_s_per_stream_minute": "server-side utime+stime over the window / "
                "(N * window minutes); nginx: master+worker; ffmpeg-listen: sum of the N listeners",
                "rss_mb": "VmRSS at the end of the window, summed over the server-side processes",
                "pss_mb": "Pss (smaps_rollup) at the same time, summed: shared libraries counted "
                "once across the processes (differs from rss_mb for ffmpeg-listen)",
                "incremental_rss_mb_per_stream": "(rss_mb at max N - rss_mb at min N) "
                "/ (max N - min N)",
                "server_cpu_sys_share": "share of the server CPU spent in the kernel (stime)",
                "other_load_cores": "CPUs kept busy during the window by anything but the server "
                "and the publishers (other work on the machine, softirqs, this script); "
                "high values mean a noisy measurement",
                "steal_cores": "CPUs the hypervisor gave to other guests during the window",
                "server_rx_speed": "bytes each server socket received in the window / "
                "(file bytes per second of media * window); 1.0 = real time",
                "publisher_read_speed": "bytes each publisher read (rchar) in the window, "
                "same scale",
            },
            **summarize(cases, args.systems, args.ns),
            "invalid_cases": [
                {
                    "system": c["system"],
                    "n": c["n"],
                    "repeat": c["repeat"],
                    "problems": c["problems"],
                }
                for c in cases
                if not c["valid"]
            ],
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
