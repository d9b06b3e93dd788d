"""Fuzz: every parser either returns a result or raises FlvError, for any input.

As h11's fuzz tests do, inputs are random bytes, mutations of real payloads from the sample
files (bytes flipped, truncated, extended), and every prefix of real headers and configs
(the "byte at a time" view of a message that arrives cut short).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.flv import FlvError, aac, av1, avc, hevc, parse_audio_tag, parse_video_tag, vp9

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


def parse_tag(tag_type: int, payload: bytes) -> object:
    return (parse_video_tag if tag_type == 9 else parse_audio_tag)(payload, 0)


def parses_or_flv_error(parse: Callable[[], object]) -> None:
    with contextlib.suppress(FlvError):
        parse()


@given(payload=st.binary(max_size=64))
def test_random_video_payloads(payload: bytes) -> None:
    parses_or_flv_error(lambda: parse_video_tag(payload, 0))


@given(payload=st.binary(max_size=64))
def test_random_audio_payloads(payload: bytes) -> None:
    parses_or_flv_error(lambda: parse_audio_tag(payload, 0))


# Random bytes rarely get past the first checks, so also try them behind valid headers
# (fed to both parsers: a video header is just more random bytes to the audio parser).
HEADERS = [
    b"\x17\x00\x00\x00\x00",  # legacy AVC sequence header
    b"\x1c\x00\x00\x00\x00",  # legacy HEVC sequence header
    b"\x90avc1",
    b"\x90hvc1",
    b"\x90av01",
    b"\x90vp09",
    b"\x96\x00hvc1\x01",  # Multitrack/OneTrack SequenceStart
    b"\x97",  # ModEx
    b"\xaf\x00",  # AAC sequence header
    b"\x90mp4a",
    b"\x95\x00mp4a\x01",
]


@given(header=st.sampled_from(HEADERS), body=st.binary(max_size=96))
def test_random_bodies_behind_valid_headers(header: bytes, body: bytes) -> None:
    parses_or_flv_error(lambda: parse_video_tag(header + body, 0))
    parses_or_flv_error(lambda: parse_audio_tag(header + body, 0))


@pytest.mark.parametrize("name", sorted(CONFIG_PARSERS))
@given(data=st.binary(max_size=128))
def test_random_configs(name: str, data: bytes) -> None:
    parses_or_flv_error(lambda: CONFIG_PARSERS[name](data))


@st.composite
def mutated(draw: st.DrawFn, payloads: tuple[tuple[int, bytes], ...]) -> tuple[int, bytes]:
    tag_type, payload = draw(st.sampled_from(payloads))
    # Keep the interesting part: headers and configs sit at the front.
    data = bytearray(payload[: draw(st.integers(0, 600))])
    for _ in range(draw(st.integers(0, 6))):
        if data:
            index = draw(st.integers(0, len(data) - 1))
            data[index] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        data += draw(st.binary(max_size=8))
    return tag_type, bytes(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_real_payloads(data: st.DataObject, all_payloads: Any) -> None:
    tag_type, payload = data.draw(mutated(all_payloads))
    parses_or_flv_error(lambda: parse_tag(tag_type, payload))


def test_every_prefix_of_real_headers_and_configs(all_payloads: Any) -> None:
    seen = set()
    for tag_type, payload in all_payloads:
        head = payload[:400]
        if head[:8] in seen:  # one per header shape; frame bodies are never parsed anyway
            continue
        seen.add(head[:8])
        for end in range(len(head) + 1):
            parses_or_flv_error(functools.partial(parse_tag, tag_type, head[:end]))
