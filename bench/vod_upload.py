"""Upload throughput (local storage): a 1 GiB file into ``streamd serve`` in parts, against
``curl --upload-file`` of the same file to a minimal streaming Starlette endpoint.

- streamd: ``streamd serve`` with its default settings (embedded PostgreSQL, local storage,
  16 MiB parts, an in-process VOD worker) in a data directory of its own. The client does what
  the upload page does: ``POST /api/videos/uploads``, then every part ``PUT`` to its signed URL,
  4 at a time, then ``POST .../complete`` (which assembles the file on disk and queues it). The
  parts are sent by one ``curl --parallel --parallel-max 4`` process (each ``-T`` reading its
  part's bytes from a file of its own), so the client costs the same as the baseline's.
- baseline: one Starlette route under uvicorn (uvloop and the HTTP parser ``serve`` gets) that
  streams ``request.stream()`` to a new file in 1 MiB writes off the event loop, and
  ``curl --upload-file`` sending the whole file in one request, to a new file per upload (as
  streamd writes, and as any endpoint that keeps what it receives must).

Pages: on this VM, copying into page-cache pages the guest has not touched lately costs
several times what copying into recently freed ones does (``copy_folio_from_iter_atomic`` is
two thirds of the server's profile). Until stop 32 the baseline rewrote one file and the
streamd side wrote and deleted its part files each round, right before the baseline's turn:
the baseline filled warm pages, streamd cold ones, and streamd looked half as fast (0.45-0.5x)
at the same server CPU per byte as a bare endpoint writing new files. Now every upload goes to
a new file on both sides and is kept, the part files are written once, and the side that goes
first alternates.

Reported per system: MB/s of the transfer (streamd: parts only, and parts + complete), the
server's CPU-seconds (user + system, its whole process tree) per GiB received, its RSS before,
its peak during the upload and after (sampled every 50 ms), medians of the rounds, and the
ratio streamd / baseline (target >= 0.8; RSS flat).

    .venv/bin/python bench/vod_upload.py [--size-mib 1024] [--rounds 3]
        [--output bench/results/vod_upload.json]

JSON on stdout; progress on stderr. Needs (2 + 2 x rounds) x the file size free in $TMPDIR
(every upload is kept until the end, on both sides).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from _util import (
    Processes,
    cpu_seconds,
    free_port,
    is_listening,
    log,
    median,
    process_tree,
    rss_bytes,
    wait_until,
)

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
PARALLEL = 4  # parts in flight, as the upload page sends them


# --- the baseline server (child process: ``baseline PORT DIR``) ---


def baseline_app(directory: Path) -> Any:
    import asyncio

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def upload(request: Request) -> JSONResponse:
        target = directory / f"upload-{uuid.uuid4().hex}.bin"
        size = 0
        with open(target, "xb") as fh:  # noqa: ASYNC230 - writes below go to a thread
            pending = bytearray()
            async for chunk in request.stream():
                pending += chunk
                size += len(chunk)
                if len(pending) >= MIB:
                    await asyncio.to_thread(fh.write, pending)
                    pending = bytearray()
            await asyncio.to_thread(fh.write, pending)
        return JSONResponse({"size": size})

    return Starlette(routes=[Route("/upload", upload, methods=["PUT"])])


def serve_baseline(port: int, directory: Path) -> None:
    import uvicorn

    # The HTTP implementation serve gets (uvicorn's "auto": httptools if installed, else h11).
    uvicorn.run(baseline_app(directory), host="127.0.0.1", port=port, loop="uvloop",
                log_level="warning", access_log=False)  # fmt: skip


# --- measuring ---


class RssSampler:
    """Peak RSS of a process tree, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        total = 0
        for pid in process_tree(self.pid):
            with contextlib.suppress(OSError):  # a child that just exited
                total += rss_bytes(pid)
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> RssSampler:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def tree_cpu(pid: int) -> float:
    """CPU-seconds (user + system) of a process and its children."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(member)
    return total


def curl(*args: str) -> None:
    done = subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", *args],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"curl failed: {done.stderr.strip()}")


def streamd_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMD_", "DATABASE_"))}
    env.update(STREAMD_DATA_DIR=str(data_dir), STREAMD_HTTP_HOST="127.0.0.1",
               STREAMD_RTMP_HOST="127.0.0.1", STREAMD_HTTP_PORT=str(free_port()),
               STREAMD_RTMP_PORT=str(free_port()), STREAMD_LOG_LEVEL="warning")  # fmt: skip
    return env


def streamd_round(base: str, token: str, source: Path, part_dir: Path) -> dict[str, Any]:
    size = source.stat().st_size
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.post(f"{base}/api/videos/uploads", headers=auth, timeout=60, json={
        "filename": "bench.mp4", "size": size, "content_type": "video/mp4",
        "title": "upload bench"})  # fmt: skip
    r.raise_for_status()
    up = r.json()
    part_size = up["part_size"]
    # The parts as files curl can -T, written once for every round (not timed) and kept: see
    # "Pages" in the docstring.
    files = []
    with open(source, "rb") as src:
        for part in up["parts"]:
            path = part_dir / f"part-{part['number']:05d}"
            chunk = src.read(part_size)
            if not path.exists() or path.stat().st_size != len(chunk):
                path.write_bytes(chunk)
            files.append((path, part["url"]))
    args = ["--parallel", "--parallel-max", str(PARALLEL)]
    for path, url in files:
        args += ["-T", str(path), url]
    started = time.perf_counter()
    curl(*args)
    parts_s = time.perf_counter() - started
    r = httpx.post(f"{base}/api/videos/uploads/{up['upload_id']}/complete", headers=auth,
                   timeout=600)  # fmt: skip
    total_s = time.perf_counter() - started
    if r.status_code != 202:
        raise SystemExit(f"complete: {r.status_code} {r.text}")
    return {"parts_s": parts_s, "total_s": total_s, "video_id": up["video_id"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--serve-log", type=Path, help="streamd's log (info level, timings)")
    args = parser.parse_args()
    procs = Processes()
    results: dict[str, list[dict[str, Any]]] = {"streamd": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="vod-upload-") as tmp:
        work = Path(tmp)
        source = work / "source.bin"
        log(f"writing a {args.size_mib} MiB file")
        with open(source, "wb") as fh:
            for _ in range(args.size_mib):
                fh.write(os.urandom(MIB))
        size = source.stat().st_size
        (work / "parts").mkdir()
        (work / "baseline").mkdir()

        env = streamd_env(work / "streamd")
        base = f"http://127.0.0.1:{env['STREAMD_HTTP_PORT']}"
        run = [sys.executable, "-m", "streamd"]
        subprocess.run([*run, "user", "create", "--username", "bench", "--email",
                        "bench@example.com", "--password-stdin", "--role", "creator"],
                       input="correct horse battery staple\n", env=env, cwd=REPO, check=True,
                       capture_output=True, text=True)  # fmt: skip
        log_to = open(args.serve_log, "wb") if args.serve_log else subprocess.DEVNULL  # noqa: SIM115
        if args.serve_log:
            env["STREAMD_LOG_LEVEL"] = "info"  # one access line per request, with its time
        serve = subprocess.Popen([*run, "serve"], env=env, cwd=REPO, start_new_session=True,
                                 stdout=log_to, stderr=log_to)  # fmt: skip
        port = free_port()
        baseline = procs.start([sys.executable, __file__, "--serve-baseline", str(port),
                                str(work / "baseline")], cwd=REPO)  # fmt: skip
        try:
            healthy = lambda: httpx.get(f"{base}/health").status_code == 200  # noqa: E731
            wait_until("streamd serve", healthy, 90, (httpx.HTTPError,))
            wait_until("baseline", lambda: is_listening(port), 30)
            r = httpx.post(f"{base}/api/auth/login", json={
                "username": "bench", "password": "correct horse battery staple"})  # fmt: skip
            r.raise_for_status()
            token = r.json()["access_token"]

            def streamd_side(n: int) -> None:
                with RssSampler(serve.pid) as rss:
                    before = rss.now()
                    cpu_before = tree_cpu(serve.pid)
                    timing = streamd_round(base, token, source, work / "parts")
                    cpu_s = tree_cpu(serve.pid) - cpu_before
                    time.sleep(1)
                    after = rss.now()
                results["streamd"].append({
                    **timing, "cpu_s_per_gib": cpu_s / (size / (1 << 30)),
                    "mb_s_parts": size / 1e6 / timing["parts_s"],
                    "mb_s_total": size / 1e6 / timing["total_s"], "rss_before": before,
                    "rss_peak": rss.peak, "rss_after": after})  # fmt: skip
                log(f"round {n + 1} streamd: {results['streamd'][-1]['mb_s_parts']:.0f} MB/s")

            def baseline_side(n: int) -> None:
                with RssSampler(baseline.pid) as rss:
                    before = rss.now()
                    cpu_before = tree_cpu(baseline.pid)
                    started = time.perf_counter()
                    curl("-T", str(source), f"http://127.0.0.1:{port}/upload")
                    seconds = time.perf_counter() - started
                    cpu_s = tree_cpu(baseline.pid) - cpu_before
                    time.sleep(1)
                    after = rss.now()
                results["baseline"].append({
                    "total_s": seconds, "cpu_s_per_gib": cpu_s / (size / (1 << 30)),
                    "mb_s_total": size / 1e6 / seconds,
                    "rss_before": before, "rss_peak": rss.peak, "rss_after": after})  # fmt: skip
                log(f"round {n + 1} baseline: {results['baseline'][-1]['mb_s_total']:.0f} MB/s")

            for n in range(args.rounds):  # the side that goes first alternates
                first, second = (streamd_side, baseline_side)[:: 1 if n % 2 == 0 else -1]
                first(n)
                second(n)
        finally:
            procs.stop_all()
            serve.terminate()
            serve.wait(30)

    def med(system: str, key: str) -> float:
        value = median(r[key] for r in results[system])
        assert value is not None
        return value

    for rounds in results.values():
        for entry in rounds:
            entry["rss_growth"] = entry["rss_peak"] - entry["rss_before"]

    def drift(system: str) -> float:
        return float(results[system][-1]["rss_after"] - results[system][0]["rss_after"])

    summary = {
        "streamd_mb_s_parts": med("streamd", "mb_s_parts"),
        "streamd_mb_s_with_complete": med("streamd", "mb_s_total"),
        "baseline_mb_s": med("baseline", "mb_s_total"),
        "ratio_parts": med("streamd", "mb_s_parts") / med("baseline", "mb_s_total"),
        "ratio_with_complete": med("streamd", "mb_s_total") / med("baseline", "mb_s_total"),
        # Parts and complete (streamd); the whole request (baseline).
        "streamd_cpu_s_per_gib": med("streamd", "cpu_s_per_gib"),
        "baseline_cpu_s_per_gib": med("baseline", "cpu_s_per_gib"),
        # Peak over the RSS before each upload (medians), and what stayed from the first
        # round's end to the last's: flat means the second is ~0 however large the file.
        "streamd_rss_peak_over_before_mib": med("streamd", "rss_growth") / MIB,
        "baseline_rss_peak_over_before_mib": med("baseline", "rss_growth") / MIB,
        "streamd_rss_drift_mib": drift("streamd") / MIB,
        "baseline_rss_drift_mib": drift("baseline") / MIB,
    }
    out = {
        "bench": "vod_upload", "size_bytes": size, "rounds": args.rounds, "parallel": PARALLEL,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "summary": summary, "rounds_detail": results,
    }  # fmt: skip
    text = json.dumps(out, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-baseline":
        serve_baseline(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
