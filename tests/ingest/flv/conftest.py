"""Fixtures of the FLV payload tests: the sample files (tests/flv_samples.py) and both tag
parsers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.flv import speedups
from tests.flv_samples import DATA_DIR, SAMPLES, TAG_AUDIO, TAG_VIDEO, FlvTag, read_flv


@pytest.fixture(scope="session")
def flv_tags() -> Callable[[str], tuple[FlvTag, ...]]:
    return read_flv


@pytest.fixture(scope="session")
def all_payloads() -> tuple[tuple[int, bytes], ...]:
    """(tag type, payload) of every audio/video tag of every sample file."""
    return tuple(
        (tag.tag_type, tag.payload)
        for name in SAMPLES
        for tag in read_flv(name)
        if tag.tag_type in (TAG_AUDIO, TAG_VIDEO)
    )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(params=["python", "compiled"])
def tag_parsers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test module's ``parse_video_tag``/``parse_audio_tag`` calls against tags.py (the
    reference) and against the compiled fast path (_tags_c.pyx). Use it with
    ``pytestmark = pytest.mark.usefixtures("tag_parsers")``. Fails, not skips, when the
    compiled one was not built."""
    if request.param == "compiled":
        compiled = speedups.compiled_parsers()
        assert compiled is not None, "the compiled FLV parsers were not built (./dev install does)"
        monkeypatch.setattr(request.module, "parse_video_tag", compiled[0])
        monkeypatch.setattr(request.module, "parse_audio_tag", compiled[1])
    return str(request.param)
