"""``/api/videos/uploads``: resumable uploads in parts, against a real PostgreSQL, local disk,
and (S3 mode) the moto S3 server over HTTP with presigned part URLs PUT by a plain HTTP client.

No worker runs here: completing an upload queues a job (checked in pgqueuer's table); the
transcoding itself is tested in tests/packager/vod and tests/streamd.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.web.api_helpers import Api, MakeApi, User
from web.uploads import expire_uploads

PART = 64 * 1024


async def start(api: Api, user: User, size: Any, **fields: Any) -> httpx.Response:
    body = {"filename": "clip.mp4", "size": size, "content_type": "video/mp4",
            "title": "my clip", **fields}  # fmt: skip
    return await api.client.post("/api/videos/uploads", json=body, headers=user.auth)


def local_path(url: str) -> str:
    """A local part URL as the ASGI test client requests it (path and query)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.fixture
async def local_api(make_api: MakeApi, tmp_path: Path) -> Api:
    return await make_api(data_dir=tmp_path, upload_part_size=PART, upload_max_size=PART * 100)


async def test_parts_in_any_order_resume_and_complete(local_api: Api, tmp_path: Path) -> None:
    api = local_api
    creator = await api.make_user("creator")
    data = os.urandom(PART * 3 + 1000)
    r = await start(api, creator, len(data), visibility="unlisted")
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["part_size"] == PART and up["part_count"] == 4 and up["received"] == []
    assert [p["number"] for p in up["parts"]] == [1, 2, 3, 4]
    assert up["status"] == "uploading"
    pieces = chunks(data, PART)
    urls = {p["number"]: local_path(p["url"]) for p in up["parts"]}

    # No bearer token needed: the signed URL is the credential.
    r = await api.client.put(urls[3], content=pieces[2])
    assert r.status_code == 200, r.text
    assert r.json() == {"number": 3, "size": PART}
    # A reload: the upload lists what it holds, with fresh URLs.
    again = (await api.client.get(f"/api/videos/uploads/{up['upload_id']}",
                                  headers=creator.auth)).json()  # fmt: skip
    assert again["received"] == [{"number": 3, "size": PART}]
    listed = (await api.client.get("/api/videos/uploads", headers=creator.auth)).json()
    assert [u["upload_id"] for u in listed["items"]] == [up["upload_id"]]

    # Completing with parts missing: 409 naming them, and the upload stays open.
    r = await api.client.post(f"/api/videos/uploads/{up['upload_id']}/complete",
                              headers=creator.auth)  # fmt: skip
    assert r.status_code == 409 and r.json()["error"]["code"] == "parts_missing"
    assert {d["field"] for d in r.json()["error"]["details"]} == {"parts.1", "parts.2", "parts.4"}

    for n in (1, 2, 4):
        r = await api.client.put(local_path(again["parts"][n - 1]["url"]), content=pieces[n - 1])
        assert r.status_code == 200, r.text
    r = await api.client.post(f"/api/videos/uploads/{up['upload_id']}/complete",
                              headers=creator.auth)  # fmt: skip
    assert r.status_code == 202, r.text
    video = r.json()
    assert video["id"] == up["video_id"] and video["status"] == "uploaded"
    assert video["visibility"] == "unlisted" and video["playback_url"] is None
    assert video["processing_stage"] == "queued" and video["file_size"] == len(data)
    assert video["can_edit"] is True

    original = tmp_path / "media" / "originals" / str(video["id"]) / "source.mp4"
    assert original.read_bytes() == data
    assert not (tmp_path / "media" / "uploads" / up["upload_id"]).exists()
    job = await api.pool.fetchrow("SELECT entrypoint, payload FROM pgqueuer")
    assert job["entrypoint"] == "vod_transcode" and b'"video_id"' in job["payload"]
    assert await api.pool.fetchval("SELECT job_id FROM videos WHERE id = $1", video["id"])
    # Done is done: no second completion, no more parts.
    r = await api.client.post(f"/api/videos/uploads/{up['upload_id']}/complete",
                              headers=creator.auth)  # fmt: skip
    assert r.status_code == 409
    r = await api.client.put(urls[1], content=pieces[0])
    assert r.status_code == 409 and r.json()["error"]["code"] == "upload_closed"


async def test_bad_parts_are_refused_and_keep_nothing(local_api: Api, tmp_path: Path) -> None:
    api = local_api
    creator = await api.make_user("creator")
    up = (await start(api, creator, PART * 2)).json()
    url = local_path(up["parts"][0]["url"])
    parts_dir = tmp_path / "media" / "uploads" / up["upload_id"]

    r = await api.client.put(url, content=b"x" * (PART - 1))  # short
    assert r.status_code == 400 and r.json()["error"]["code"] == "wrong_part_size"

    async def too_long() -> Any:
        yield b"x" * PART
        yield b"y"

    r = await api.client.put(url, content=too_long())  # chunked, one byte over
    assert r.status_code == 400 and r.json()["error"]["code"] == "wrong_part_size"
    assert not any(parts_dir.glob("part-*")) if parts_dir.exists() else True

    forged = url.replace("sig=", "sig=A")
    r = await api.client.put(forged, content=b"x" * PART)
    assert r.status_code == 403 and r.json()["error"]["code"] == "bad_signature"
    other_part = url.replace("/parts/1?", "/parts/2?")  # part 1's signature for part 2
    r = await api.client.put(other_part, content=b"x" * PART)
    assert r.status_code == 403
    path, _, _query = url.partition("?")
    r = await api.client.put(path + "?exp=1&sig=abc", content=b"x" * PART)
    assert r.status_code == 403
    r = await api.client.put(path.replace("/parts/1", "/parts/9"), content=b"x")
    assert r.status_code == 403  # signed for another number

    received = (await api.client.get(f"/api/videos/uploads/{up['upload_id']}",
                                     headers=creator.auth)).json()["received"]  # fmt: skip
    assert received == []
    # Another user can neither see nor complete nor cancel it.
    other = await api.make_user("creator")
    for method, suffix in (("GET", ""), ("POST", "/complete"), ("DELETE", "")):
        r = await api.client.request(method, f"/api/videos/uploads/{up['upload_id']}{suffix}",
                                     headers=other.auth)  # fmt: skip
        assert r.status_code == 404, (method, r.text)


async def test_limits_before_any_byte(make_api: MakeApi, tmp_path: Path) -> None:
    api = await make_api(
        data_dir=tmp_path, upload_part_size=PART, upload_max_size=PART * 10,
        upload_quota=PART * 12, upload_max_concurrent=2,
    )  # fmt: skip
    viewer, creator = await api.make_user("viewer"), await api.make_user("creator")
    assert (await start(api, viewer, 100)).status_code == 403
    r = await start(api, creator, PART * 10 + 1)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    for kind, name in (("image/png", "a.png"), ("text/plain", "a.mp4"), ("", "a.exe"),
                       ("application/x-mpegurl", "a.m3u8")):  # fmt: skip
        r = await start(api, creator, 100, content_type=kind, filename=name)
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_type", kind
    for size, bad in ((0, {}), ("5", {}), (100, {"title": ""}), (100, {"visibility": "x"}),
                      (100, {"extra": 1})):  # fmt: skip
        assert (await start(api, creator, size, **bad)).status_code == 422, bad
    assert await api.pool.fetchval("SELECT count(*) FROM videos") == 0

    # A browser sends no type for .mkv: the extension says what it is.
    r = await start(api, creator, PART * 8, content_type="", filename="game.MKV")
    assert r.status_code == 201, r.text
    r = await start(api, creator, PART * 5)  # 8 + 5 > the quota of 12 parts' worth
    assert r.status_code == 413 and r.json()["error"]["code"] == "quota_exceeded"
    assert (await start(api, creator, PART)).status_code == 201
    r = await start(api, creator, PART)  # a third at once
    assert r.status_code == 409 and r.json()["error"]["code"] == "too_many_uploads"
    assert await api.pool.fetchval("SELECT count(*) FROM video_uploads") == 2


async def test_cancel_and_expiry_free_the_parts(local_api: Api, tmp_path: Path) -> None:
    api = local_api
    creator = await api.make_user("creator")
    storage = api.app.state.storage
    uploads = []
    for _ in range(2):
        up = (await start(api, creator, PART * 2)).json()
        r = await api.client.put(local_path(up["parts"][0]["url"]), content=b"z" * PART)
        assert r.status_code == 200
        uploads.append(up)
    cancelled, abandoned = uploads
    r = await api.client.delete(f"/api/videos/uploads/{cancelled['upload_id']}",
                                headers=creator.auth)  # fmt: skip
    assert r.status_code == 204
    assert not (tmp_path / "media" / "uploads" / cancelled["upload_id"]).exists()
    r = await api.client.put(local_path(cancelled["parts"][1]["url"]), content=b"z" * PART)
    assert r.status_code in (404, 409)
    assert not (tmp_path / "media" / "uploads" / cancelled["upload_id"]).exists()

    await api.pool.execute("UPDATE video_uploads SET expires_at = now() - interval '1 s' "
                           "WHERE id = $1", abandoned["upload_id"])  # fmt: skip
    r = await api.client.put(local_path(abandoned["parts"][1]["url"]), content=b"z" * PART)
    assert r.status_code == 410
    assert await expire_uploads(api.pool, storage) == 1
    assert not (tmp_path / "media" / "uploads" / abandoned["upload_id"]).exists()
    status = await api.pool.fetchval("SELECT status FROM video_uploads WHERE id = $1",
                                     abandoned["upload_id"])  # fmt: skip
    assert status is None  # went with its video row
    assert await api.pool.fetchval("SELECT count(*) FROM videos") == 0
    assert (await api.client.get("/api/videos/uploads", headers=creator.auth)).json() == {
        "items": []
    }

    # A completion cut short by a crash (left 'completing', maybe assembled): expired too.
    stuck = (await start(api, creator, PART)).json()
    await api.pool.execute("UPDATE video_uploads SET status = 'completing', expires_at = now() "
                           "WHERE id = $1", stuck["upload_id"])  # fmt: skip
    original = tmp_path / "media" / "originals" / str(stuck["video_id"]) / "source.mp4"
    original.parent.mkdir(parents=True)
    original.write_bytes(b"z" * PART)
    assert await expire_uploads(api.pool, storage) == 1
    assert not original.exists()
    assert await api.pool.fetchval("SELECT count(*) FROM videos") == 0


async def test_s3_parts_go_straight_to_the_bucket(
    make_api: MakeApi, moto_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    import boto3

    api = await make_api(
        data_dir=tmp_path, storage="s3", s3_bucket=bucket, s3_endpoint_url=moto_endpoint,
        upload_part_size=5 << 20, upload_max_size=(5 << 20) * 100,
    )  # fmt: skip
    creator = await api.make_user("creator")
    data = os.urandom((5 << 20) + 12345)
    up = (await start(api, creator, len(data), filename="trip.mov",
                      content_type="video/quicktime")).json()  # fmt: skip
    assert up["part_count"] == 2
    assert all(p["url"].startswith(moto_endpoint) for p in up["parts"])
    pieces = chunks(data, 5 << 20)
    async with httpx.AsyncClient() as plain:  # no credentials: the URL is presigned
        r = await plain.put(up["parts"][1]["url"], content=pieces[1])
        assert r.status_code == 200, r.text
        again = (await api.client.get(f"/api/videos/uploads/{up['upload_id']}",
                                      headers=creator.auth)).json()  # fmt: skip
        assert again["received"] == [{"number": 2, "size": len(pieces[1])}]
        r = await api.client.post(f"/api/videos/uploads/{up['upload_id']}/complete",
                                  headers=creator.auth)  # fmt: skip
        assert r.status_code == 409 and r.json()["error"]["code"] == "parts_missing"
        r = await plain.put(again["parts"][0]["url"], content=pieces[0])
        assert r.status_code == 200, r.text
        # moto does not check presigned signatures (S3 does), so a stray part 3 lands: the
        # completion takes parts 1..part_count only, and the object is exactly the file.
        stray = again["parts"][0]["url"].replace("partNumber=1", "partNumber=3")
        assert (await plain.put(stray, content=b"x")).status_code == 200
    r = await api.client.post(f"/api/videos/uploads/{up['upload_id']}/complete",
                              headers=creator.auth)  # fmt: skip
    assert r.status_code == 202, r.text
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    key = f"originals/{up['video_id']}/source.mov"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data

    # A cancelled S3 upload leaves no multipart upload behind.
    other = (await start(api, creator, len(data))).json()
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    r = await api.client.delete(f"/api/videos/uploads/{other['upload_id']}",
                                headers=creator.auth)  # fmt: skip
    assert r.status_code == 204
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
