"""``/api/videos/uploads``: resumable uploads shaped like S3 multipart, on either storage.

A creator asks for an upload and gets a part size and one signed URL per part. With S3 the
URLs are presigned ``UploadPart`` requests straight to the bucket; on local storage they are
streamd's own ``PUT .../parts/{n}``, signed the same way (no bearer token: a URL is a
capability for one part of one upload until it expires), each streamed to disk in chunks.
``GET`` lists the parts stored (what a reload or a dropped connection resumes from),
``complete`` checks every part is there with its exact size, assembles, and queues the
transcoding job in the same transaction that marks the video uploaded. Limits (size, type,
quota, concurrent uploads) are checked before a byte is stored, and the sizes again on
completion. Abandoned uploads expire and ``web.housekeeping`` frees their space.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import secrets
import time
from datetime import UTC, datetime
from pathlib import PurePosixPath

import asyncpg
from starlette.requests import ClientDisconnect

from config.secrets import derived_key
from config.settings import Settings
from db import jobs, video_uploads, videos
from packager.storage.base import Storage
from packager.storage.multipart import LocalMultipart, Multipart, PartSizeError, multipart_for
from web.api import Call, Endpoint
from web.errors import ApiError
from web.video_schemas import (
    PartOut,
    PartUrlOut,
    UploadIn,
    UploadListOut,
    UploadListQuery,
    UploadOut,
    VideoOut,
)

log = logging.getLogger(__name__)

# What FFmpeg's allowed demuxers read (packager/vod/probe.py checks the bytes themselves).
EXTENSIONS = {
    "video/mp4": ".mp4", "video/quicktime": ".mov", "video/x-matroska": ".mkv",
    "video/matroska": ".mkv", "video/webm": ".webm", "video/x-flv": ".flv",
    "video/mp2t": ".ts", "video/x-msvideo": ".avi", "video/avi": ".avi",
    "video/msvideo": ".avi",
}  # fmt: skip
# Browsers send no type, or a generic one, for files they do not know (.mkv, .flv, .ts).
GENERIC_TYPES = ("", "application/octet-stream", "binary/octet-stream")
BY_EXTENSION = {ext: kind for kind, ext in EXTENSIONS.items()} | {".m4v": "video/mp4"}
MAX_PARTS = 10_000  # S3's limit, kept on local storage too
PART_PURPOSE = b"streamd upload parts"


def storage_of(call: Call) -> Storage:
    storage: Storage | None = getattr(call.request.app.state, "storage", None)
    if storage is None:
        raise ApiError(503, "uploads_unavailable", "this server has no media storage configured")
    return storage


def media_type(filename: str, declared: str) -> tuple[str, str]:
    """(content type, extension) of an upload, or 415."""
    declared = declared.partition(";")[0].strip().lower()
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if declared in GENERIC_TYPES and suffix in BY_EXTENSION:
        declared = BY_EXTENSION[suffix]
    if declared not in EXTENSIONS:
        raise ApiError(
            415, "unsupported_type",
            "streamd accepts mp4, mov, mkv, webm, flv, ts and avi video files",
        )  # fmt: skip
    return declared, EXTENSIONS[declared]


def part_size_for(settings: Settings, size: int) -> int:
    """The configured part size, raised (in whole MiB) when the file would need more parts
    than S3 allows."""
    part = settings.upload_part_size
    if math.ceil(size / part) > MAX_PARTS:
        part = math.ceil(size / MAX_PARTS / (1 << 20)) << 20
    return part


def expected_size(upload: asyncpg.Record, number: int) -> int:
    if number < int(upload["part_count"]):
        return int(upload["part_size"])
    return int(upload["size"]) - (int(upload["part_count"]) - 1) * int(upload["part_size"])


# --- signed part URLs (local storage) ---


def _signature(settings: Settings, upload_id: str, number: int, expires: int) -> str:
    message = f"{upload_id}:{number}:{expires}".encode()
    digest = hmac.new(derived_key(settings, PART_PURPOSE), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def _check_signature(call: Call, upload_id: str, number: int) -> None:
    params = call.request.query_params
    try:
        expires = int(params.get("exp", ""))
    except ValueError:
        raise ApiError(403, "bad_signature", "this part URL is not signed") from None
    given = params.get("sig", "")
    wanted = _signature(call.settings, upload_id, number, expires)
    if not hmac.compare_digest(given.encode(), wanted.encode()):
        log.warning("upload %s part %d: bad signature from %s", upload_id, number, call.client_ip)
        raise ApiError(403, "bad_signature", "this part URL's signature does not match")
    if expires < time.time():
        raise ApiError(403, "url_expired", "this part URL has expired; GET the upload for new ones")


def _base_url(call: Call) -> str:
    if call.settings.public_url:
        return call.settings.public_url.rstrip("/")
    return str(call.request.base_url).rstrip("/")


def _part_urls(call: Call, upload: asyncpg.Record, multipart: Multipart) -> list[PartUrlOut]:
    ttl = int(call.settings.upload_part_url_ttl)
    upload_id = str(upload["id"])
    count = int(upload["part_count"])
    if multipart.kind == "s3":
        key, s3_id = str(upload["object_key"]), str(upload["s3_upload_id"])
        return [
            PartUrlOut(number=n, url=multipart.presigned_part_url(key, s3_id, n, ttl))
            for n in range(1, count + 1)
        ]
    expires = int(time.time()) + ttl
    base = f"{_base_url(call)}/api/videos/uploads/{upload_id}/parts"
    return [
        PartUrlOut(
            number=n,
            url=f"{base}/{n}?exp={expires}&sig={_signature(call.settings, upload_id, n, expires)}",
        )
        for n in range(1, count + 1)
    ]


async def _received(upload: asyncpg.Record, multipart: Multipart) -> dict[int, int]:
    return await multipart.received(
        str(upload["id"]), str(upload["object_key"]), upload["s3_upload_id"]
    )


async def _upload_out(call: Call, upload: asyncpg.Record) -> UploadOut:
    multipart = multipart_for(storage_of(call))
    received = await _received(upload, multipart) if upload["status"] == "uploading" else {}
    return UploadOut(
        upload_id=upload["id"], video_id=upload["video_id"], filename=upload["filename"],
        size=upload["size"], part_size=upload["part_size"], part_count=upload["part_count"],
        parts=_part_urls(call, upload, multipart) if upload["status"] == "uploading" else [],
        received=[PartOut(number=n, size=s) for n, s in sorted(received.items())],
        expires_at=upload["expires_at"], status=upload["status"],
    )  # fmt: skip


async def _own_upload(call: Call) -> asyncpg.Record:
    upload = await video_uploads.get(call.db.primary, call.path_str("upload_id"))
    if upload is None or (upload["user_id"] != call.user.id and not call.user.is_admin):
        raise ApiError(404, "not_found", "no such upload")
    return upload


def _require_open(upload: asyncpg.Record) -> None:
    if upload["status"] != "uploading":
        raise ApiError(409, "upload_closed", f"this upload is {upload['status']}")
    if upload["expires_at"] <= datetime.now(UTC):
        raise ApiError(410, "upload_expired", "this upload has expired; start a new one")


# --- endpoints ---


async def create_upload(call: Call) -> UploadOut:
    body = await call.body(UploadIn)
    settings = call.settings
    if body.size > settings.upload_max_size:
        raise ApiError(413, "too_large", f"files are at most {settings.upload_max_size} bytes")
    content_type, extension = media_type(body.filename, body.content_type)
    storage = storage_of(call)
    multipart = multipart_for(storage)
    part_size = part_size_for(settings, body.size)
    part_count = math.ceil(body.size / part_size)
    upload_id = secrets.token_urlsafe(24)
    async with call.db.primary.acquire() as conn, conn.transaction():
        await video_uploads.lock_user(conn, call.user.id)
        open_uploads, used = await video_uploads.usage(conn, call.user.id)
        if open_uploads >= settings.upload_max_concurrent:
            raise ApiError(
                409, "too_many_uploads",
                f"at most {settings.upload_max_concurrent} uploads at once: finish or cancel one",
            )  # fmt: skip
        if used + body.size > settings.upload_quota:
            raise ApiError(
                413, "quota_exceeded",
                f"this upload would exceed your storage quota of {settings.upload_quota} bytes",
            )  # fmt: skip
        video_id = await videos.create_upload(
            conn, user_id=call.user.id, title=body.title, description=body.description,
            visibility=body.visibility, original_format=extension.lstrip("."),
        )  # fmt: skip
        key = f"originals/{video_id}/source{extension}"
        # S3's CreateMultipartUpload inside the transaction: if it fails, no row is left.
        s3_upload_id = await multipart.start(key, content_type)
        upload = await video_uploads.create(
            conn, upload_id=upload_id, video_id=video_id, user_id=call.user.id,
            filename=body.filename, content_type=content_type, size=body.size,
            part_size=part_size, part_count=part_count, storage=multipart.kind,
            object_key=key, s3_upload_id=s3_upload_id, ttl_s=settings.upload_expiry,
        )  # fmt: skip
    log.info(
        "upload %s: user %d, video %d, %d bytes in %d parts (%s)",
        upload_id, call.user.id, video_id, body.size, part_count, multipart.kind,
    )  # fmt: skip
    return await _upload_out(call, upload)


async def list_uploads(call: Call) -> UploadListOut:
    call.query(UploadListQuery)
    rows = await video_uploads.list_open(call.db.primary, call.user.id)
    return UploadListOut(items=[await _upload_out(call, row) for row in rows])


async def get_upload(call: Call) -> UploadOut:
    return await _upload_out(call, await _own_upload(call))


async def put_part(call: Call) -> PartOut:
    """Stream one part to disk (local storage). Signed URL instead of a bearer token."""
    upload_id, number = call.path_str("upload_id"), int(call.request.path_params["number"])
    _check_signature(call, upload_id, number)
    storage = storage_of(call)
    multipart = multipart_for(storage)
    if not isinstance(multipart, LocalMultipart):
        raise ApiError(409, "wrong_storage", "parts of this upload go to S3, not here")
    upload = await video_uploads.get(call.db.primary, upload_id)
    if upload is None:
        raise ApiError(404, "not_found", "no such upload")
    _require_open(upload)
    if not 1 <= number <= int(upload["part_count"]):
        raise ApiError(404, "not_found", f"this upload has parts 1 to {upload['part_count']}")
    expected = expected_size(upload, number)
    declared = call.request.headers.get("content-length")
    if declared is not None and declared.strip() != str(expected):
        raise ApiError(400, "wrong_part_size", f"part {number} must be exactly {expected} bytes")
    try:
        offset = (number - 1) * int(upload["part_size"])
        await multipart.write_part(upload_id, number, offset, call.request.stream(), expected)
    except PartSizeError as exc:
        log.warning("upload %s part %d refused: %s", upload_id, number, exc)
        raise ApiError(400, "wrong_part_size", str(exc)) from None
    except ClientDisconnect:
        log.info("upload %s part %d: client went away; nothing kept", upload_id, number)
        raise
    except FileNotFoundError:  # completed or aborted meanwhile: its directory went away
        raise ApiError(
            409, "upload_closed", "this upload was closed while the part arrived"
        ) from None
    # A part that lands after an abort: its upload's directory is gone again at once.
    current = await video_uploads.get(call.db.primary, upload_id)
    if current is None or current["status"] != "uploading":
        await multipart.abort(upload_id, str(upload["object_key"]), None)
        raise ApiError(409, "upload_closed", "this upload was closed while the part arrived")
    return PartOut(number=number, size=expected)


async def complete_upload(call: Call) -> VideoOut:
    upload = await _own_upload(call)
    _require_open(upload)
    upload_id = str(upload["id"])
    multipart = multipart_for(storage_of(call))
    if not await video_uploads.claim(call.db.primary, upload_id):
        raise ApiError(409, "upload_closed", "this upload is being completed or was closed")
    try:
        received = await _received(upload, multipart)
        missing = [
            n for n in range(1, int(upload["part_count"]) + 1)
            if received.get(n) != expected_size(upload, n)
        ]  # fmt: skip
        if missing:
            raise ApiError(
                409, "parts_missing",
                f"{len(missing)} part(s) missing or incomplete: send them, then complete",
                details=[{"field": f"parts.{n}", "message": "missing"} for n in missing[:100]],
            )  # fmt: skip
        size = await multipart.complete(
            upload_id, str(upload["object_key"]), upload["s3_upload_id"],
            int(upload["part_count"]),
        )  # fmt: skip
        if size != int(upload["size"]):  # the parts were checked: storage lost something
            raise ApiError(
                500, "assembly_failed", "the stored file does not have the announced size"
            )
    except BaseException:
        await video_uploads.transition(call.db.primary, upload_id, ["completing"], "uploading")
        raise
    async with call.db.primary.acquire() as conn, conn.transaction():
        await video_uploads.transition(conn, upload_id, ["completing"], "completed")
        job_id = await jobs.enqueue(conn, jobs.TRANSCODE, {"video_id": upload["video_id"]})
        await videos.mark_uploaded(
            conn, int(upload["video_id"]), original_key=str(upload["object_key"]),
            file_size=size, job_id=job_id,
        )  # fmt: skip
    log.info("upload %s complete: video %d queued (job %d)", upload_id, upload["video_id"], job_id)
    row = await videos.get_full(call.db.primary, int(upload["video_id"]))
    assert row is not None
    return VideoOut.from_row(
        row, call.settings.hls_base_url(), viewer_id=call.user.id, is_admin=call.user.is_admin
    )


async def abort_upload(upload: asyncpg.Record, pool: asyncpg.Pool, storage: Storage,
                       status: str) -> bool:  # fmt: skip
    """Close an unfinished upload (``status`` aborted or expired), free its parts and drop its
    video. False when it was no longer open."""
    upload_id = str(upload["id"])
    before = ["uploading", "completing"] if status == "expired" else ["uploading"]
    if not await video_uploads.transition(pool, upload_id, before, status):
        return False
    await multipart_for(storage).abort(upload_id, str(upload["object_key"]), upload["s3_upload_id"])
    # A crash mid-completion may have assembled it (and lost the 'completing' state).
    await storage.delete([str(upload["object_key"])])
    await pool.execute(
        "DELETE FROM videos WHERE id = $1 AND status = 'uploading'", upload["video_id"]
    )
    return True


async def delete_upload(call: Call) -> None:
    upload = await _own_upload(call)
    if not await abort_upload(upload, call.db.primary, storage_of(call), "aborted"):
        raise ApiError(409, "upload_closed", f"this upload is {upload['status']}")
    log.info("upload %s aborted by user %d", upload["id"], call.user.id)


async def expire_uploads(pool: asyncpg.Pool, storage: Storage) -> int:
    """Abort uploads past their expiry (the housekeeper's sweep); how many."""
    count = 0
    for upload in await video_uploads.expired(pool):
        if await abort_upload(upload, pool, storage, "expired"):
            count += 1
    return count


UPLOAD = "/api/videos/uploads/{upload_id:str}"
ENDPOINTS = [
    Endpoint("POST", "/api/videos/uploads", create_upload,
             "Start an upload: a part size and a signed URL per part", "uploads",
             auth="creator", body=UploadIn, response=UploadOut, status=201,
             errors=(409, 413, 415)),
    Endpoint("GET", "/api/videos/uploads", list_uploads,
             "Your unfinished uploads, newest first (to resume after a reload)", "uploads",
             auth="creator", query=UploadListQuery, response=UploadListOut),
    Endpoint("GET", UPLOAD, get_upload,
             "An upload: fresh part URLs and the parts already stored", "uploads",
             auth="creator", response=UploadOut, errors=(404,)),
    Endpoint("PUT", UPLOAD + "/parts/{number:int}", put_part,
             "Store one part (local storage; the signed URL is the credential)", "uploads",
             response=PartOut, errors=(400, 403, 404, 409, 410),
             raw_body="application/octet-stream"),
    Endpoint("POST", UPLOAD + "/complete", complete_upload,
             "Assemble the parts and queue the video for processing", "uploads",
             auth="creator", response=VideoOut, status=202, errors=(404, 409, 410)),
    Endpoint("DELETE", UPLOAD, delete_upload, "Cancel an upload and free its parts", "uploads",
             auth="creator", errors=(404, 409)),
]  # fmt: skip
