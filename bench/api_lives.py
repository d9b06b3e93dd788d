"""``GET /api/lives?status=live``: streamd's real app against a bare Starlette + asyncpg app.

Both apps are served the same way (uvicorn, one worker, uvloop, 127.0.0.1) from the same
database rows in one embedded PostgreSQL; ``wrk`` (Debian package; installed when missing and
we are root) loads one app at a time, the two alternating, for several rounds. Medians of the
rounds are reported, with the throughput ratio streamd / bare (target >= 0.8).

- streamd: ``web.app.create_app`` as ``streamd serve`` builds it: middleware (request id, access
  log, metrics), the declared route, the PostgreSQL cache (``STREAMD_API_CACHE_TTL``, 2 s) in
  front of the query on the read pool.
- bare: one Starlette route that runs the same query (``db.lives.list_public``) on an asyncpg
  pool of the same size and returns the same JSON fields, on every request; no middleware.
- ``streamd-info-log``: streamd again with ``STREAMD_LOG_LEVEL=info``, its production default,
  which writes one access-log line per request to stderr (here /dev/null).

    .venv/bin/python bench/api_lives.py [--rounds 3] [--seconds 8] [--connections 32]
        [--output bench/results/api_lives.json]

JSON on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _util import Processes, free_port, log, median

from db import lives, users
from db.embedded import EmbeddedPostgres
from db.migrate import migrate

PATH = "/api/lives?status=live"
SYSTEMS = ("streamd", "bare", "streamd-info-log")
CREATORS, LIVES_PER_CREATOR, LIVE_SHARE = 40, 5, 4  # 200 lives, every 4th on air (50)


# --- the two apps (run in child processes: ``serve SYSTEM URL PORT``) ---


def bare_app(database_url: str, pool_size: int) -> Any:
    import contextlib

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        state["pool"] = await asyncpg.create_pool(database_url, min_size=1, max_size=pool_size)
        yield
        await state["pool"].close()

    async def list_lives(request: Request) -> JSONResponse:
        limit = 20
        rows = await lives.list_public(
            state["pool"],
            statuses=[request.query_params["status"]],
            username=None,
            before_id=None,
            limit=limit + 1,
        )
        base = "http://localhost:8080"
        items = [
            {
                "id": r["id"],
                "title": r["title"],
                "description": r["description"],
                "user_id": r["user_id"],
                "username": r["username"],
                "status": r["status"],
                "scheduled_start": _iso(r["scheduled_start"]),
                "start_time": _iso(r["start_time"]),
                "end_time": _iso(r["end_time"]),
                "viewer_count": r["viewer_count"],
                "chat_enabled": r["chat_enabled"],
                "playback_url": f"{base}/hls/{r['id']}/master.m3u8",
                "thumbnail_url": f"{base}/hls/{r['id']}/poster.jpg",
                "created_at": _iso(r["created_at"]),
                "updated_at": _iso(r["updated_at"]),
            }
            for r in rows[:limit]
        ]
        return JSONResponse({"items": items, "next_cursor": None})

    return Starlette(routes=[Route("/api/lives", list_lives)], lifespan=lifespan)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def serve(system: str, database_url: str, port: int) -> None:
    import contextlib

    import uvicorn
    import uvloop

    from config.settings import load_settings

    env = {
        "DATABASE_URL": database_url,
        "STREAMD_JWT_SECRET": "b" * 40,
        "STREAMD_LOG_LEVEL": "info" if system == "streamd-info-log" else "warning",
    }
    settings = load_settings(env)

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            if system == "bare":
                app = bare_app(database_url, settings.db_pool_max)
            else:
                from streamd.logs import configure_logging
                from streamd.resources import chat_hub, database_pools
                from web.app import create_app

                configure_logging(settings)
                # The pools and chat hub as `streamd serve` opens them (streamd.resources).
                db = await stack.enter_async_context(database_pools(settings, database_url))
                hub = await stack.enter_async_context(chat_hub(settings, db))
                app = create_app(settings, db, hub)
            config = uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                server_header=False,
            )
            await uvicorn.Server(config).serve()

    uvloop.run(main())


# --- the run ---


async def seed(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        on_air = 0
        for c in range(CREATORS):
            user = await users.create(
                conn,
                username=f"creator{c}",
                email=f"c{c}@example.com",
                password_hash="x",
                role="creator",
            )
            for n in range(LIVES_PER_CREATOR):
                live = await lives.create(
                    conn,
                    user_id=user["id"],
                    title=f"live {c}-{n}",
                    description="a benchmark live " * 4,
                )
                if (c * LIVES_PER_CREATOR + n) % LIVE_SHARE == 0:
                    await lives.mark_live(conn, live["id"])
                    on_air += 1
        await conn.execute("ANALYZE")
        return on_air
    finally:
        await conn.close()


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing wrk (Debian package)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
            check=False,
            env=env,
            capture_output=True,
        )
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
                check=True,
                env=env,
                capture_output=True,
            )
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench/api_lives.py needs wrk (apt-get install wrk)")
    return found


def wait_ready(port: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}{PATH}", timeout=2)
            if r.status_code == 200:
                body: dict[str, Any] = r.json()
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not answer {PATH}")


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT[unit]


def run_wrk(wrk: str, port: int, seconds: float, connections: int, threads: int
            ) -> dict[str, Any]:  # fmt: skip
    out = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "--timeout",
            "5s",
            f"http://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, flags=re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": _ms(lat["50"]),
        "p90_ms": _ms(lat["90"]),
        "p99_ms": _ms(lat["99"]),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--output", type=Path)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    args = parse_args(argv)
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="streamd-api-bench-"))
    pg = EmbeddedPostgres(workdir / "pg")
    procs = Processes()
    started = time.time()
    loadavg_at_start = Path("/proc/loadavg").read_text().split()[:3]
    try:
        url = pg.acquire()
        on_air = asyncio.run(seed(url))
        log(f"seeded {CREATORS * LIVES_PER_CREATOR} lives, {on_air} on air")
        ports = {system: free_port() for system in SYSTEMS}
        for system, port in ports.items():
            procs.start([sys.executable, __file__, "serve", system, url, str(port)],
                        stderr=subprocess.DEVNULL)  # fmt: skip
        bodies = {system: wait_ready(port) for system, port in ports.items()}
        shapes = {
            s: ([i["id"] for i in b["items"]], sorted(b["items"][0])) for s, b in bodies.items()
        }
        assert len(set(map(str, shapes.values()))) == 1, f"the apps must answer alike: {shapes}"
        rounds: list[dict[str, Any]] = []
        for n in range(args.rounds):
            for system in SYSTEMS:
                run_wrk(wrk, ports[system], args.warmup, args.connections, args.threads)
                result = run_wrk(wrk, ports[system], args.seconds, args.connections, args.threads)
                log(
                    f"round {n + 1}/{args.rounds} {system}: {result['rps']:.0f} req/s, "
                    f"p99 {result['p99_ms']:.1f} ms"
                )
                rounds.append({"round": n + 1, "system": system, **result})
    finally:
        procs.stop_all()
        try:
            pg.release()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    summary: dict[str, Any] = {}
    for system in SYSTEMS:
        mine = [r for r in rounds if r["system"] == system]
        summary[system] = {
            key: round(median(r[key] for r in mine) or 0, 2)
            for key in ("rps", "p50_ms", "p90_ms", "p99_ms")
        }
        summary[system]["failed_requests"] = sum(r["non_2xx"] + r["socket_errors"] for r in mine)
    ratio = summary["streamd"]["rps"] / summary["bare"]["rps"]
    document = {
        "benchmark": "api_lives",
        "request": f"GET {PATH}",
        "command": " ".join(["bench/api_lives.py", *(argv or sys.argv[1:])]),
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "uvicorn": "1 worker, uvloop, h11, 127.0.0.1, access_log off",
            "db_pool_max": 10,
            "lives": CREATORS * LIVES_PER_CREATOR,
            "lives_on_air": on_air,
            "items_per_response": min(20, on_air),
        },
        "environment": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "wrk": subprocess.run([wrk, "--version"], capture_output=True, text=True)
            .stdout.split("\n")[0]
            .strip(),
        },
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "loadavg_at_start": loadavg_at_start,
        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
        "medians": summary,
        "ratio_rps_streamd_vs_bare": round(ratio, 3),
        "ratio_rps_streamd_info_log_vs_bare": round(
            summary["streamd-info-log"]["rps"] / summary["bare"]["rps"], 3
        ),
        "target_ratio": 0.8,
        "meets_target": ratio >= 0.8,
        "notes": [
            "streamd serves this list from its PostgreSQL cache (one primary-key read of "
            "cache_data per request, recomputed every 2 s); bare runs the join query every time",
            "the load generator, both servers and PostgreSQL share the same CPUs; a high "
            "loadavg means other work competed too (rounds alternate, so ratios hold better "
            "than absolute numbers)",
        ],
        "rounds": rounds,
    }
    text = json.dumps(document, indent=2)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
