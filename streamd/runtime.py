"""Process-level resources of a streamd command: its database and the serve lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from config.settings import Settings
from db.embedded import EmbeddedPostgres


class AlreadyServing(Exception):
    """Another ``streamd serve`` holds this data directory."""


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """``DATABASE_URL``, or the embedded server's URL held for the duration of the block."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.pg_dir)
    url = embedded.acquire()
    try:
        yield url
    finally:
        embedded.release()


@contextlib.contextmanager
def serve_lock(data_dir: Path) -> Iterator[None]:
    """Exclusive for the life of the process; the kernel drops it if the process dies."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "serve.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise AlreadyServing(
                f"another streamd serve (pid {holder}) is already running with data dir "
                f"{data_dir.resolve()}; stop it or use another STREAMD_DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
