"""The ``/hls`` origin: requests/s for a live media playlist and a ~1 MB segment, streamd
against nginx serving the same files, with ``wrk`` (1 thread, 32 connections), same run.

One ``streamd serve`` with its default settings (ladder, recording, posters, LL-HLS as
configured by default) has one live publishing ``obs_like_1080p.flv`` (ingest_density.py's
1080p30 H.264 4.5 Mbit/s + AAC file, 2 s keyframes) with ``ffmpeg -re -c copy`` for the whole
run. nginx (Debian's nginx-light, one worker, ``sendfile on``, access log on, as shipped)
serves streamd's media directory as static files at the same paths, so both answer the very
same bytes:

- playlist: the live's source media playlist (``.../source/live.m3u8``), which changes while
  it is measured: streamd answers its LL-HLS playlist from memory, nginx the plain one the
  packager writes to disk (smaller: no parts; both sizes are reported);
- segment: one ~1 MB segment of that live (recording keeps it on disk for the whole run),
  which streamd reads from disk like nginx (segments are in its memory only until stored).

Each round measures both systems on both URLs, alternating which goes first; medians of the
rounds and their ratios streamd / nginx (targets: playlist >= 0.1, segment >= 0.5). The
publisher keeps running through the nginx runs, so both see the same background load.

    .venv/bin/python bench/hls_origin.py [--rounds 3] [--seconds 5]
        [--output bench/results/hls_origin.json]

JSON on stdout; progress on stderr. wrk and nginx are installed with apt when missing (root).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _util import REPO, emit, free_port, log, median, streamd_cli, streamd_env, wait_until
from ingest_density import ensure_media, publisher_argv

PASSWORD = "origin-load-pass-1"
APT_PACKAGES = ("wrk", "nginx-light")
TARGETS = {"playlist": 0.1, "segment": 0.5}
KINDS = tuple(TARGETS)
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def tools() -> tuple[str, str, str]:
    missing = [p for p, exe in (("wrk", "wrk"), ("nginx-light", "nginx")) if not _which(exe)]
    if missing:
        log(f"installing {' '.join(missing)}")
        subprocess.run(["apt-get", "install", "-y", "-q", *APT_PACKAGES], check=True,
                       capture_output=True)  # fmt: skip
    ffmpeg = shutil.which("ffmpeg")
    wrk, nginx = _which("wrk"), _which("nginx")
    if not (ffmpeg and wrk and nginx):
        raise SystemExit("needs ffmpeg, wrk and nginx")
    return ffmpeg, wrk, nginx


def _which(name: str) -> str | None:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    return found


def nginx_conf(root: Path, port: int, work: Path) -> Path:
    """One worker serving ``root`` (streamd's media directory) at ``/``, as shipped otherwise."""
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    types {{ application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; }}
    sendfile on;
    tcp_nopush on;
    access_log {work}/access.log;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        add_header Access-Control-Allow-Origin *;
    }}
}}
""")
    return conf


def wrk(exe: str, url: str, seconds: int, connections: int) -> dict[str, Any]:
    done = subprocess.run(
        [exe, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    rps = _RPS.search(done.stdout)
    bad = _NON_2XX.search(done.stdout)
    if rps is None:
        raise RuntimeError(f"wrk said: {done.stdout}{done.stderr}")
    return {"rps": float(rps[1]), "non_2xx": int(bad[1]) if bad else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    ffmpeg, wrk_exe, nginx_exe = tools()
    media = ensure_media(ffmpeg)

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        system: {kind: [] for kind in KINDS} for system in ("streamd", "nginx")
    }
    with tempfile.TemporaryDirectory(prefix="streamd-bench-origin-") as tmp:
        work = Path(tmp)
        env = streamd_env(work / "var")
        streamd_cli(env, "user", "create", "--username", "bench", "--email", "bench@example.com",
                    "--password-stdin", "--role", "creator", stdin=PASSWORD + "\n")  # fmt: skip
        live = json.loads(streamd_cli(env, "live", "create", "--user", "bench", "--title", "b"))
        base = f"http://127.0.0.1:{env['STREAMD_HTTP_PORT']}"
        nginx_port = free_port()
        serve = subprocess.Popen([sys.executable, "-m", "streamd", "serve"], env=env, cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        procs: list[subprocess.Popen[Any]] = [serve]
        try:
            wait_until("serve", lambda: httpx.get(f"{base}/health").status_code == 200, 60,
                       (httpx.HTTPError,))  # fmt: skip
            url = f"rtmp://127.0.0.1:{env['STREAMD_RTMP_PORT']}/live/{live['stream_key']}"
            procs.append(subprocess.Popen(publisher_argv(ffmpeg, media, url)))
            playlist_path, segment_path = wait_for_media(base, live["id"])
            media_root = work / "var" / "media"
            (work / "nginx").mkdir()
            conf = nginx_conf(media_root, nginx_port, work / "nginx")
            procs.append(subprocess.Popen([nginx_exe, "-c", str(conf)]))
            nginx_base = f"http://127.0.0.1:{nginx_port}"
            wait_until("nginx", lambda: httpx.get(f"{nginx_base}{segment_path}").is_success,
                       20, (httpx.HTTPError,))  # fmt: skip
            bases = {"streamd": base, "nginx": nginx_base}
            for round_ in range(args.rounds):
                order = ["streamd", "nginx"] if round_ % 2 == 0 else ["nginx", "streamd"]
                paths = {"playlist": playlist_path, "segment": segment_path}
                for kind in KINDS:
                    for system in order:
                        path = paths[kind]
                        got = wrk(wrk_exe, bases[system] + path, args.seconds, args.connections)
                        runs[system][kind].append(got)
                        log(f"round {round_ + 1} {kind} {system}: {got['rps']:.0f} req/s")
            segment_bytes = len(httpx.get(base + segment_path).content)
            playlist_bytes = len(httpx.get(base + playlist_path).content)
            nginx_playlist_bytes = len(httpx.get(nginx_base + playlist_path).content)
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()

    summary: dict[str, Any] = {}
    for kind in KINDS:
        ours = median(r["rps"] for r in runs["streamd"][kind])
        theirs = median(r["rps"] for r in runs["nginx"][kind])
        ratio = round(ours / theirs, 3) if ours and theirs else None
        summary[kind] = {
            "streamd_rps": round(ours or 0), "nginx_rps": round(theirs or 0), "ratio": ratio,
            "target": TARGETS[kind], "met": ratio is not None and ratio >= TARGETS[kind],
        }  # fmt: skip
    report = {
        "benchmark": "hls_origin",
        "settings": {
            "streamd": "streamd serve with its default settings, one live publishing "
            "obs_like_1080p.flv (ffmpeg -re -c copy) throughout",
            "nginx": "nginx-light, 1 worker, sendfile on, access log on, same files",
            "wrk": f"-t1 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds",
            "playlist_bytes": {"streamd": playlist_bytes, "nginx": nginx_playlist_bytes},
            "segment_bytes": segment_bytes,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "summary": summary,
        "runs": runs,
    }
    emit(report, args.output)


def wait_for_media(base: str, live_id: int) -> tuple[str, str]:
    """Paths of the live's source media playlist and of a listed segment over 500 kB."""
    master = f"{base}/hls/{live_id}/master.m3u8"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        answer = httpx.get(master)
        if answer.is_success:
            source = next(
                line for line in answer.text.splitlines() if line and not line.startswith("#")
            )
            playlist = f"/hls/{live_id}/{source}"
            body = httpx.get(base + playlist).text
            segments = [line for line in body.splitlines() if line.endswith(".m4s")]
            for name in segments[:-1]:
                path = playlist.rsplit("/", 1)[0] + "/" + name
                if len(httpx.get(base + path).content) > 500_000:
                    return playlist, path
        time.sleep(1)
    raise SystemExit("no segment over 500 kB was listed in 90 s")


if __name__ == "__main__":
    main()
