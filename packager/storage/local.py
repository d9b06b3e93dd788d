"""Local disk storage.

:class:`LocalStorage` keeps objects under a root directory (``DATA_DIR/media``) that
``web.hls`` serves at ``/hls``. A put writes a temporary file beside the target and renames it
over, so a reader sees the old object or the new one, never half of one. Writes are not
fsync'ed: a SIGKILL keeps what was written (the page cache belongs to the kernel); only a power
cut could lose the last seconds, like any live packager's. All disk work runs in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from pathlib import Path

from packager.storage.base import check_key

_temp_names = itertools.count()


class LocalStorage:
    def __init__(self, root: Path, base_url: str = "") -> None:
        self.root = root
        self.base_url = base_url.rstrip("/")
        self._dirs: set[Path] = set()  # directories known to exist: one mkdir each

    def path_for(self, key: str) -> Path:
        check_key(key)
        return self.root.joinpath(*key.split("/"))

    async def put(self, key: str, data: bytes, content_type: str, cache_control: str) -> None:
        # Content type and cache control are derived from the name again when serving.
        await asyncio.to_thread(self._write, self.path_for(key), data)

    def _write(self, path: Path, data: bytes) -> None:
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{next(_temp_names)}.tmp")
        try:
            with open(temp, "wb") as fh:
                fh.write(data)
            os.replace(temp, path)
        except FileNotFoundError:
            # The directory was removed under us (a cleanup); make it again once.
            self._dirs.discard(path.parent)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as fh:
                fh.write(data)
            os.replace(temp, path)

    async def get(self, key: str) -> bytes | None:
        path = self.path_for(key)

        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(read)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_for(key).is_file)

    async def delete(self, keys: list[str]) -> None:
        paths = [self.path_for(k) for k in keys]

        def remove() -> None:
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

        await asyncio.to_thread(remove)

    async def list(self, prefix: str) -> list[str]:
        root = self.root

        def walk() -> list[str]:
            # Walk only the directory the prefix names (a prefix may end inside a file name).
            base = root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else root
            if not base.is_dir():
                return []
            keys = []
            for dirpath, _, files in os.walk(base):
                for name in files:
                    if name.startswith("."):
                        continue  # temporary files of puts in progress
                    key = Path(dirpath, name).relative_to(root).as_posix()
                    if key.startswith(prefix):
                        keys.append(key)
            return sorted(keys)

        return await asyncio.to_thread(walk)

    def url_for(self, key: str) -> str:
        return f"{self.base_url}/{key}"
