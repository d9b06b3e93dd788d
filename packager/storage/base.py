"""Where segments and playlists go: the :class:`Storage` interface every backend implements.

The interface is object storage's (keys, whole-object puts with a content type and a
Cache-Control, deletes, prefix listings, a public URL per key), so the S3 backend
(``packager.storage.s3``) implements it as is, and so does local disk
(``packager.storage.local``); nothing relies on renames or appends. Keys look like
``hls/{live}/{broadcast}/source/seg_42.m4s``.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Protocol

# Cache-Control per kind of object; web/hls.py serves with them too (streamd hands it
# known_object_headers).
CACHE_IMMUTABLE = "public, max-age=31536000, immutable"  # segments, init segments, never rewritten
CACHE_LIVE_PLAYLIST = "public, max-age=1"  # about half a target duration, as Apple advises
CACHE_VOD_PLAYLIST = "public, max-age=3600"  # final, but re-written if a recording is recovered
CACHE_POSTER = "public, max-age=5"

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
    ".ts": "video/mp2t",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt",  # VOD storyboards (thumbnail tracks for seek previews)
}


def object_headers(key: str) -> tuple[str, str]:
    """(content type, cache control) for a key, by its name."""
    return known_object_headers(key) or ("application/octet-stream", CACHE_IMMUTABLE)


def known_object_headers(key: str) -> tuple[str, str] | None:
    """:func:`object_headers` for the kinds of object in ``CONTENT_TYPES`` (playlists, init and
    media segments, posters); None for any other key."""
    name = PurePosixPath(key).name
    suffix = PurePosixPath(name).suffix
    content_type = CONTENT_TYPES.get(suffix)
    if content_type is None:
        return None
    if suffix == ".m3u8":
        cache = CACHE_VOD_PLAYLIST if name == "vod.m3u8" else CACHE_LIVE_PLAYLIST
    elif suffix in (".jpg", ".vtt"):
        cache = CACHE_POSTER
    else:
        cache = CACHE_IMMUTABLE
    return content_type, cache


class Storage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str, cache_control: str) -> None:
        """Store ``data`` under ``key`` (replacing it) so that readers see all or nothing."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, keys: list[str]) -> None:
        """Delete these keys; missing ones are not an error."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``, sorted."""
        ...

    def url_for(self, key: str) -> str:
        """The URL players use for ``key`` (relative to the site for local storage)."""
        ...


async def put_object(storage: Storage, key: str, data: bytes) -> None:
    """Put with the headers :func:`object_headers` gives the key."""
    content_type, cache = object_headers(key)
    await storage.put(key, data, content_type, cache)


class StorageKeyError(ValueError):
    """A key that could escape the storage root (``..``, absolute, empty parts)."""


def check_key(key: str) -> None:
    """Raise :class:`StorageKeyError` for a key no backend stores (shared by every backend)."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise StorageKeyError(f"invalid storage key {key!r}")
