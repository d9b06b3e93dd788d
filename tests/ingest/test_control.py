"""``live_control`` payloads: the stop command cuts the right live; anything else is ignored."""

from __future__ import annotations

import logging

import pytest

from ingest.control import LiveControl


def test_stop_reaches_the_process_holding_the_live() -> None:
    calls: list[tuple[int, str]] = []
    control = LiveControl(lambda live, reason: calls.append((live, reason)) or live == 7)
    assert control.on_notify('{"live_id": 7, "action": "stop", "reason": "stopped by an admin"}')
    assert not control.on_notify('{"live_id": 8, "action": "stop", "reason": ""}')
    assert calls == [(7, "stopped by an admin"), (8, "stopped")]


@pytest.mark.parametrize(
    "payload",
    ["", "not json", "[]", '{"live_id": 7}', '{"action": "stop"}',
     '{"live_id": "7", "action": "stop"}', '{"live_id": true, "action": "stop"}',
     '{"live_id": 7, "action": "restart"}'],
)  # fmt: skip
def test_foreign_payloads_are_logged_and_ignored(
    payload: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    control = LiveControl(lambda live, reason: calls.append(live) or True)
    with caplog.at_level(logging.WARNING, logger="ingest.control"):
        assert not control.on_notify(payload)
    assert calls == []
    assert "live_control: ignored" in caplog.text
