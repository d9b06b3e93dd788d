"""Fuzz: every codec parser either returns a result or raises CodecError, for any input."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media import aac, av1, avc, hevc, vp9
from media.errors import CodecError

Parser = Callable[[bytes], object]

CONFIG_PARSERS: dict[str, Parser] = {
    "avc.parse_config": avc.parse_config,
    "avc.AvcSps.parse": avc.AvcSps.parse,
    "hevc.parse_config": hevc.parse_config,
    "hevc.HevcSps.parse": hevc.HevcSps.parse,
    "hevc.vps_frame_rate": hevc.vps_frame_rate,
    "av1.parse_config": av1.parse_config,
    "av1.sequence_header_in_obus": av1.sequence_header_in_obus,
    "av1.Av1SequenceHeader.parse": av1.Av1SequenceHeader.parse,
    "vp9.parse_config": vp9.parse_config,
    "vp9.frame_size": vp9.frame_size,
    "aac.parse_config": aac.parse_config,
}


@pytest.mark.parametrize("name", sorted(CONFIG_PARSERS))
@given(data=st.binary(max_size=128))
def test_random_configs(name: str, data: bytes) -> None:
    with contextlib.suppress(CodecError):
        CONFIG_PARSERS[name](data)
