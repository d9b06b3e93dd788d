"""Helpers for tests that run streamd the way an operator does: as a command."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def run_cli(
    *args: str, env: dict[str, str], stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m streamd ARGS`` the way an operator's script would."""
    return subprocess.run(
        [sys.executable, "-m", "streamd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMD_", "DATABASE_"))}
    env["STREAMD_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """A ``streamd serve`` child process on free loopback ports."""

    def __init__(self, env: dict[str, str]) -> None:
        self.http_port = free_port()
        self.env = dict(env)
        self.env.setdefault("STREAMD_HTTP_HOST", "127.0.0.1")
        self.env.setdefault("STREAMD_RTMP_HOST", "127.0.0.1")
        self.env["STREAMD_HTTP_PORT"] = str(self.http_port)
        self.env.setdefault("STREAMD_RTMP_PORT", str(free_port()))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamd", "serve"],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.base_url = f"http://127.0.0.1:{self.http_port}"

    def wait_healthy(self, timeout: float = 60) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                raise AssertionError(f"serve exited with {self.proc.returncode}: {err}")
            try:
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("serve did not become healthy in time")

    def stop(self, timeout: float = 30) -> tuple[int, str, str]:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[tuple[ServeProcess, list[str]]]:
    """``streamd serve`` while the block runs, healthy, with its log lines collected as they
    come (so a chatty server never blocks on a full pipe); terminated and reaped after."""
    server = ServeProcess(env)
    log: list[str] = []
    assert server.proc.stderr is not None
    reader = threading.Thread(target=lambda: log.extend(server.proc.stderr or []), daemon=True)
    reader.start()
    try:
        server.wait_healthy()
        yield server, log
    finally:
        if server.proc.poll() is None:
            server.proc.terminate()
        server.proc.wait(timeout=60)
        reader.join(timeout=10)
        for pipe in (server.proc.stdout, server.proc.stderr):
            if pipe is not None:
                pipe.close()
