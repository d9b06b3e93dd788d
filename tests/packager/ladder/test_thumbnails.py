"""Thumbnails on real media: JPEGs decoded back with PyAV, one per interval, keyframes only."""

from __future__ import annotations

import asyncio
import io
import logging

import av
import pytest

from packager.ladder.ladder import Ladder
from packager.ladder.thumbnails import Thumbnailer, thumbnail_size
from packager.types import Rung
from tests.packager.ladder.ladder_samples import (
    POLICY,
    PRESET,
    SERVE,
    Collected,
    Source,
    feed,
    make_flv,
    read_source,
)


@pytest.fixture(scope="session")
def thumb_source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    # 6 s at 30 fps with a 1 s GOP: keyframes at 0..5 s (plus the B-frame delay).
    path = tmp_path_factory.mktemp("thumbs") / "src.flv"
    return read_source(make_flv(path, seconds=6, gop_s=1))


@pytest.fixture(scope="session")
def thumb_hevc(tmp_path_factory: pytest.TempPathFactory) -> Source:
    path = tmp_path_factory.mktemp("thumbs-hevc") / "src.flv"
    return read_source(make_flv(path, codec="libx265", seconds=2, gop_s=1))


def jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


class Store:
    def __init__(self) -> None:
        self.jpegs: list[bytes] = []

    async def __call__(self, data: bytes) -> None:
        await asyncio.sleep(0)  # a real store awaits I/O
        self.jpegs.append(data)


@pytest.mark.parametrize("fixture", ["thumb_source", "thumb_hevc"])
async def test_alone_it_decodes_one_keyframe_per_interval(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    source: Source = request.getfixturevalue(fixture)
    store = Store()
    thumbs = Thumbnailer(store, interval_s=2.5, width=320)
    thumbs.start(source.config)
    for packet in source.packets:
        thumbs.push(packet)  # every packet: it keeps what it needs
        await asyncio.sleep(0.001)
    thumbs.end()
    await asyncio.wait_for(thumbs.wait_closed(), timeout=30)
    keys = source.keyframe_pts
    # Keyframes one second apart, 2.5 s interval: the 1st, 4th (3 s later), ... keyframes.
    expected = len(keys[::3])
    assert len(store.jpegs) == thumbs.written == thumbs.keyframes_decoded == expected
    assert thumbs.frames_taken == 0
    assert {jpeg_size(j) for j in store.jpegs} == {(320, 180)}


async def test_default_interval_writes_once_for_a_short_stream(thumb_source: Source) -> None:
    store = Store()
    # serve's default interval (10 s); 640 px: a 640x360 source is not scaled up
    thumbs = Thumbnailer(store, interval_s=SERVE.thumbnail_interval)
    thumbs.start(thumb_source.config)
    await feed_thumbs(thumbs, thumb_source)
    assert len(store.jpegs) == 1
    assert jpeg_size(store.jpegs[0]) == (640, 360)


async def feed_thumbs(thumbs: Thumbnailer, source: Source) -> None:
    for packet in source.packets:
        thumbs.push(packet)
    thumbs.end()
    await asyncio.wait_for(thumbs.wait_closed(), timeout=30)


async def test_behind_a_ladder_it_takes_decoded_frames(thumb_source: Source) -> None:
    store = Store()
    thumbs = Thumbnailer(store, interval_s=2.5, width=320)
    out = Collected()
    ladder = Ladder(
        (Rung("180p", 320, 180, 30, 250_000),),
        PRESET,
        on_output=out,
        loop=asyncio.get_running_loop(),
        policy=POLICY,
        thumbnailer=thumbs,
    )
    ladder.start(thumb_source.config)  # starts the thumbnailer too
    await feed(ladder, thumb_source.packets)
    ladder.end()  # ends it
    await asyncio.wait_for(ladder.wait_closed(), timeout=60)
    assert thumbs.keyframes_decoded == 0, "no second decoder behind a ladder"
    assert thumbs.frames_taken == len(store.jpegs) == len(thumb_source.keyframe_pts[::3])
    assert {jpeg_size(j) for j in store.jpegs} == {(320, 180)}
    assert out.packets("180p")


async def test_a_failing_store_is_logged_not_fatal(
    thumb_source: Source, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def broken(data: bytes) -> None:
        nonlocal calls
        calls += 1
        raise OSError("disk full")

    thumbs = Thumbnailer(broken, interval_s=2.5)
    thumbs.start(thumb_source.config)
    with caplog.at_level(logging.ERROR, logger="packager.ladder.thumbnails"):
        await feed_thumbs(thumbs, thumb_source)
    assert calls == thumbs.failed == 2
    assert thumbs.written == 0
    assert "storing the thumbnail failed" in caplog.text


def test_thumbnail_size() -> None:
    assert thumbnail_size(1920, 1080, 640) == (640, 360)
    assert thumbnail_size(1080, 1920, 640) == (640, 1138)
    assert thumbnail_size(320, 240, 640) == (320, 240)  # never scaled up
    assert thumbnail_size(853, 480, 640) == (640, 360)
