"""The aiortc internals the WHIP tap relies on: the pinned range, and a clear refusal when
they change (a receiver without them)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from ingest.whip.tap import (
    TESTED_AIORTC,
    ReceiverTap,
    UnsupportedAiortc,
    aiortc_version,
    within_tested_range,
)

ROOT = Path(__file__).resolve().parents[3]


def test_the_installed_aiortc_is_the_tested_one() -> None:
    assert within_tested_range(), (
        f"aiortc {aiortc_version()} is outside {TESTED_AIORTC}: rerun the WHIP tests against it "
        "and move TESTED_AIORTC and the pin in pyproject.toml together"
    )


def test_the_pin_matches_the_tested_range() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in dependencies if d.startswith("aiortc")]
    (low, high) = TESTED_AIORTC
    assert re.sub(r"\s", "", pin) == f"aiortc>={low[0]}.{low[1]},<{high[0]}.{high[1]}"


def test_versions_outside_the_range_are_not_tested() -> None:
    (low, high) = TESTED_AIORTC
    assert within_tested_range(low)
    assert not within_tested_range(high)
    assert not within_tested_range((low[0], low[1] - 1))


class _ChangedReceiver:
    """What a receiver would look like if aiortc renamed its decoder queue."""

    def __init__(self) -> None:
        self._RTCRtpReceiver__started = False
        self._RTCRtpReceiver__timestamp_mapper = object()

    async def _handle_rtcp_packet(self, packet: object) -> None: ...

    async def _send_rtcp_pli(self, media_ssrc: int) -> None: ...


def test_a_receiver_without_the_internals_is_refused_with_what_is_missing() -> None:
    tap = ReceiverTap(_ChangedReceiver())  # type: ignore[arg-type]
    with pytest.raises(UnsupportedAiortc, match="_RTCRtpReceiver__decoder_queue"):
        tap.install(lambda *a: None, lambda *a: None, lambda: None)
