"""Fuzz: every tag parser either returns a result or raises FlvError, for any input
(the codec parsers under them: tests/media/test_fuzz.py).

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

from ingest.flv import (
    FlvError,
    parse_audio_tag,
    parse_video_tag,
    speedups,
    tags,
)
from media.types import MediaPacket


def parse_tag(tag_type: int, payload: bytes) -> object:
    return (parse_video_tag if tag_type == 9 else parse_audio_tag)(payload, 0)


def parses_or_flv_error(parse: Callable[[], object]) -> None:
    with contextlib.suppress(FlvError):
        parse()


@pytest.mark.usefixtures("tag_parsers")  # tags.py and its compiled fast path
@given(payload=st.binary(max_size=64))
def test_random_video_payloads(payload: bytes) -> None:
    parses_or_flv_error(lambda: parse_video_tag(payload, 0))


@pytest.mark.usefixtures("tag_parsers")  # tags.py and its compiled fast path
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


@pytest.mark.usefixtures("tag_parsers")  # tags.py and its compiled fast path
@given(header=st.sampled_from(HEADERS), body=st.binary(max_size=96))
def test_random_bodies_behind_valid_headers(header: bytes, body: bytes) -> None:
    parses_or_flv_error(lambda: parse_video_tag(header + body, 0))
    parses_or_flv_error(lambda: parse_audio_tag(header + body, 0))


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


@pytest.mark.usefixtures("tag_parsers")  # tags.py and its compiled fast path
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


# --- the compiled fast path (_tags_c.pyx) decides like tags.py ---------------------------

Outcome = tuple[str, object]


def outcome(parse: Callable[[Any, int], object], payload: Any, timestamp: int) -> Outcome:
    """What a parser made of a payload: its event, or the class and text of its error."""
    try:
        event = parse(payload, timestamp)
    except FlvError as exc:
        return "error", (type(exc).__name__, str(exc))
    if isinstance(event, MediaPacket):
        assert type(event.data) is bytes
    return "event", event


def compiled() -> tuple[Callable[[Any, int], object], Callable[[Any, int], object]]:
    parsers = speedups.compiled_parsers()
    assert parsers is not None, "the compiled FLV parsers were not built (./dev install does)"
    return parsers


# First bytes of the fast cases and of their near misses: any first byte (legacy and enhanced
# frame types, codec ids, packet types, sound formats), then a packet type byte or a FourCC.
_SECOND = st.one_of(
    st.integers(0, 7).map(lambda b: bytes((b,))),
    st.sampled_from([b"avc1", b"hvc1", b"av01", b"vp09", b"mp4a", b"vp08", b"avc2", b"mp4"]),
)
_PAYLOADS = st.builds(
    lambda first, second, body: bytes((first,)) + second + body,
    st.integers(0, 255),
    _SECOND,
    st.binary(max_size=24),
)


@settings(max_examples=2000)
@given(
    payload=st.one_of(_PAYLOADS, st.binary(max_size=16)),
    wrap=st.sampled_from([bytes, bytearray, memoryview]),
    timestamp=st.integers(0, 1 << 40),
)
def test_compiled_tag_parsers_decide_like_the_python_ones(
    payload: bytes, wrap: Callable[[bytes], Any], timestamp: int
) -> None:
    """Same event or same error as tags.py, for video and audio, whatever the payload type."""
    video, audio = compiled()
    assert outcome(video, wrap(payload), timestamp) == outcome(
        parse_video_tag, wrap(payload), timestamp
    )
    assert outcome(audio, wrap(payload), timestamp) == outcome(
        parse_audio_tag, wrap(payload), timestamp
    )


def test_compiled_tag_parsers_agree_on_every_header() -> None:
    """Exhaustive over what selects a branch: every first byte, behind every packet type byte
    or FourCC above, with every body length around the fast path's length checks."""
    video, audio = compiled()
    seconds = [bytes((b,)) for b in range(8)]
    seconds += [b"avc1", b"hvc1", b"av01", b"vp09", b"mp4a", b"vp08", b"avc2", b"mp4"]
    for first in range(256):
        for second in seconds:
            for size in range(6):
                payload = bytes((first,)) + second + bytes(range(0xF0, 0xF0 + size))
                for wrap in (bytes, bytearray):
                    for mine, reference in ((video, parse_video_tag), (audio, parse_audio_tag)):
                        assert outcome(mine, wrap(payload), 90) == outcome(
                            reference, wrap(payload), 90
                        ), payload


def test_compiled_tag_parsers_build_real_frames_in_c(
    all_payloads: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every coded frame of the sample files (legacy H.264 and AAC; E-RTMP HEVC CodedFrames
    and CodedFramesX, AV1, VP9) takes the fast path and gives the reference's packet; only
    the other tags (sequence starts, metadata, multitrack frames) reach the Python parser.
    The fast cases missing from the files (legacy HEVC, E-RTMP avc1 and mp4a frames) are in
    the differential test above."""
    video, audio = compiled()
    expected = [
        (
            tag_type,
            payload,
            outcome(tags.parse_video_tag if tag_type == 9 else tags.parse_audio_tag, payload, 0),
        )
        for tag_type, payload in all_payloads
    ]
    reached: list[bytes] = []

    def counting(parse: Callable[[Any, int], object]) -> Callable[[Any, int], object]:
        def reference(payload: Any, timestamp: int) -> object:
            reached.append(payload)
            return parse(payload, timestamp)

        return reference

    monkeypatch.setattr(tags, "parse_video_tag", counting(tags.parse_video_tag))
    monkeypatch.setattr(tags, "parse_audio_tag", counting(tags.parse_audio_tag))
    frames = 0
    for tag_type, payload, result in expected:
        assert outcome(video if tag_type == 9 else audio, payload, 0) == result
        if isinstance(result[1], MediaPacket) and result[1].track_id == 0:
            frames += 1
            assert payload not in reached, payload[:12]
    assert frames >= 100
    assert 0 < len(reached) < 100  # sequence starts, metadata, multitrack frames
