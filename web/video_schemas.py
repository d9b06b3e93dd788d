"""Bodies of the video API (``web/videos.py``) and of uploads (``web/uploads.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

import asyncpg
from pydantic import BaseModel, Field

from web.schemas import (
    Body,
    Cursor,
    Description,
    Limit,
    PriceIn,
    PriceOut,
    Query,
    Text,
    Title,
    media_url,
)

Visibility = Literal["public", "unlisted", "private"]
VideoStatus = Literal["uploading", "uploaded", "processing", "ready", "failed"]
UploadStatus = Literal["uploading", "completing", "completed", "aborted", "expired"]


class QualityOut(BaseModel):
    name: str
    width: int
    height: int
    bitrate: int = Field(description="peak bits/s of the rendition (BANDWIDTH)")


class VideoOut(BaseModel):
    id: int
    title: str
    description: str | None
    user_id: int
    username: str
    live_id: int | None = Field(description="the live this is a recording of; null otherwise")
    thumbnail_url: str | None
    playback_url: str | None = Field(
        description="the HLS master playlist (the CDN's, when one is set); null until ready"
    )
    duration: float = Field(description="seconds")
    created_at: datetime
    status: VideoStatus
    visibility: Visibility
    processing_progress: int = Field(description="0-100")
    processing_stage: str | None
    eta_seconds: int | None
    error_message: str | None = Field(description="why processing failed, for the uploader")
    views: int
    likes: int
    liked: bool | None = Field(description="whether the caller likes it; null when anonymous")
    file_size: int = Field(description="bytes of the uploaded original")
    storyboard_url: str | None = Field(description="WebVTT thumbnails track for seek previews")
    qualities: list[QualityOut]
    price: PriceOut | None = Field(description="set when the video is sold")
    can_edit: bool

    @classmethod
    def from_row(
        cls, row: asyncpg.Record, base_url: str, *, viewer_id: int | None = None,
        is_admin: bool = False, liked: bool | None = None,
        qualities: Sequence[asyncpg.Record] = (),
    ) -> VideoOut:  # fmt: skip
        """``row``: ``db.videos.OWNER_COLUMNS``. ``base_url``: ``Settings.hls_base_url()``.
        URLs are built from storage keys when there are some, so they follow today's CDN
        setting rather than the one of the day the video was made."""
        ready = row["status"] == "ready"
        key = row["hls_key"]
        playback = None
        if ready:
            playback = (
                _key_url(base_url, key) if key else media_url(base_url, row["hls_master_url"])
            )
        thumbnail = row["thumbnail_url"]
        if row["thumbnail_key"]:
            thumbnail = _key_url(base_url, row["thumbnail_key"])
        elif thumbnail:
            thumbnail = media_url(base_url, thumbnail)
        storyboard = row["storyboard_key"]
        return cls(
            id=row["id"], title=row["title"], description=row["description"],
            user_id=row["user_id"], username=row["username"], live_id=row["live_id"],
            thumbnail_url=thumbnail, playback_url=playback, duration=row["duration"],
            created_at=row["created_at"], status=row["status"], visibility=row["visibility"],
            processing_progress=row["processing_progress"],
            processing_stage=row["processing_stage"], eta_seconds=row["eta_seconds"],
            error_message=row["error_message"], views=row["views"], likes=row["likes"],
            liked=liked, file_size=row["file_size"],
            storyboard_url=_key_url(base_url, storyboard) if storyboard and ready else None,
            qualities=[
                QualityOut(name=q["name"], width=q["width"], height=q["height"],
                           bitrate=q["bitrate"])
                for q in qualities
            ],
            price=PriceOut.of(row["price_amount"], row["price_currency"]),
            can_edit=is_admin or (viewer_id is not None and viewer_id == row["user_id"]),
        )  # fmt: skip


def _key_url(base_url: str, key: str) -> str:
    return f"{base_url}/{key.lstrip('/')}"


class VideoListQuery(Query):
    q: Annotated[Text, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="search: words of the title or description, any language"
    )
    user: Annotated[Text, Field(max_length=50)] | None = Field(
        default=None, description="only this user's videos (username)"
    )
    status: VideoStatus | None = Field(
        default=None, description="only with this status (your own videos, or any as admin)"
    )
    visibility: Visibility | None = Field(
        default=None, description="only with this visibility (your own videos, or any as admin)"
    )
    sort: Literal["new", "popular", "relevance"] | None = Field(
        default=None, description="newest first (default), most viewed, or best match (with q)"
    )
    cursor: Cursor | None = None
    limit: Limit = 20


class VideoListOut(BaseModel):
    items: list[VideoOut]
    next_cursor: str | None


class VideoPatchIn(Body):
    title: Title | None = None
    description: Description | None = None
    visibility: Visibility | None = None
    price: PriceIn | None = Field(
        default=None, description="sell the video at this price; null makes it free"
    )


class LikeOut(BaseModel):
    likes: int
    liked: bool


class ViewIn(Body):
    viewer_id: (
        Annotated[str, Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None
    ) = Field(default=None, description="the id an earlier answer issued (anonymous viewers)")


class ViewOut(BaseModel):
    views: int
    viewer_id: str | None = Field(description="keep it and send it back (anonymous viewers)")


class PlaybackOut(BaseModel):
    """``POST /api/videos/{id}/playback`` and ``/api/lives/{id}/playback``."""

    private: bool = Field(description="whether /hls needs the cookie this answer set")
    expires_at: datetime | None = Field(description="when the cookie stops working")
    price: PriceOut | None = Field(default=None, description="set when the item is sold")


# --- uploads ---


class UploadIn(Body):
    filename: Annotated[Text, Field(min_length=1, max_length=255)]
    size: int = Field(ge=1, description="bytes of the whole file")
    content_type: Annotated[Text, Field(max_length=100)] = Field(
        description="the file's media type (video/mp4, video/quicktime, video/x-matroska, "
        "video/webm, video/x-flv, video/mp2t, video/x-msvideo); empty or "
        "application/octet-stream is read from the file name's extension"
    )
    title: Title
    description: Description | None = None
    visibility: Visibility = "public"


class PartUrlOut(BaseModel):
    number: int
    url: str = Field(description="PUT the part's bytes here, without an Authorization header")


class PartOut(BaseModel):
    number: int
    size: int


class UploadOut(BaseModel):
    upload_id: str
    video_id: int
    filename: str
    size: int
    part_size: int = Field(description="bytes of every part but the last")
    part_count: int
    parts: list[PartUrlOut] = Field(description="where each part goes (signed, short-lived)")
    received: list[PartOut] = Field(description="parts already stored: send only the others")
    expires_at: datetime
    status: UploadStatus


class UploadListQuery(Query):
    status: Literal["uploading"] = "uploading"


class UploadListOut(BaseModel):
    items: list[UploadOut]
