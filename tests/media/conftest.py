"""Fixtures of the codec tests: the FLV sample files, whose records ffmpeg wrote."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.flv_samples import FlvTag, read_flv


@pytest.fixture(scope="session")
def flv_tags() -> Callable[[str], tuple[FlvTag, ...]]:
    return read_flv
