"""chat.rules, chat.events and chat.viewers: no I/O, time passed in."""

from __future__ import annotations

import json

import pytest

from chat.events import encode, parse_action
from chat.rules import MAX_TEXT, RateLimiter, RuleError, SlowMode, clean_text
from chat.viewers import Beat, Heartbeats


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("hello", "hello"),
        ("  padded\t", "padded"),
        ("two\nlines", "two lines"),
        ("e\u0301", "\u00e9"),  # NFC
        ("bell\x07 and nul\x00", "bell and nul"),
        ("\u202eevil\u202c", "evil"),
        ("zero\u200bwidth", "zerowidth"),
        ("<script>alert(1)</script>", "<script>alert(1)</script>"),  # text, not escaped
        ("\U0001f600" * MAX_TEXT, "\U0001f600" * MAX_TEXT),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


@pytest.mark.parametrize(
    ("raw", "code"),
    [("", "empty"), (" \u200b\x01 ", "empty"), ("x" * 501, "too_long"), ("x" * 10_000, "too_long")],
)
def test_clean_text_refuses(raw: str, code: str) -> None:
    with pytest.raises(RuleError) as info:
        clean_text(raw)
    assert info.value.code == code


def test_rate_limit_is_a_sliding_window_per_user() -> None:
    limiter = RateLimiter(limit=5, window=10)
    for t in range(5):
        limiter.check(1, float(t))
    with pytest.raises(RuleError) as info:
        limiter.check(1, 5.0)
    assert info.value.code == "rate_limited"
    assert info.value.retry_after == pytest.approx(5.0)
    limiter.check(2, 5.0)  # another user is not affected
    limiter.check(1, 10.0)  # the message at t=0 left the window
    with pytest.raises(RuleError):
        limiter.check(1, 10.5)


def test_rate_limiter_forgets_idle_users() -> None:
    limiter = RateLimiter(limit=1, window=1)
    for user in range(1000):
        limiter.check(user, 0.0)
    for n in range(300):
        limiter.check(5000 + n, 100.0)
    assert len(limiter) < 600


def test_slow_mode() -> None:
    slow = SlowMode()
    slow.check(1, 0.0)
    slow.check(1, 0.1)  # off
    slow.set(30)
    slow.check(1, 1.0)
    with pytest.raises(RuleError) as info:
        slow.check(1, 20.0)
    assert info.value.code == "slow_mode" and info.value.retry_after == pytest.approx(11.0)
    slow.check(2, 20.0)
    slow.check(1, 31.0)
    slow.set(0)
    slow.check(1, 31.5)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"type": "message", "text": "hi"}', ("message", "hi", 0, None)),
        ('{"type": "delete", "message_id": 7}', ("delete", "", 7, None)),
        ('{"type": "mute", "user_id": 3, "duration": 60}', ("mute", "", 3, 60)),
        ('{"type": "ban", "user_id": 3, "duration": 0}', ("ban", "", 3, 0)),
        ('{"type": "slow_mode"}', ("slow_mode", "", 0, None)),
        ('{"type": "slow_mode", "seconds": 10}', ("slow_mode", "", 0, 10)),
        ('{"type": "slow_mode", "enabled": false}', ("slow_mode", "", 0, 0)),
    ],
)
def test_parse_action(frame: str, expected: tuple[str, str, int, int | None]) -> None:
    action = parse_action(frame)
    assert (action.type, action.text, action.target, action.seconds) == expected


@pytest.mark.parametrize(
    "frame",
    [
        b"{}",
        "",
        "[]",
        "null",
        '{"type": "message"}',
        '{"type": "message", "text": null}',
        '{"type": "delete", "message_id": true}',
        '{"type": "delete", "message_id": 0}',
        '{"type": "delete", "message_id": 9223372036854775808}',
        '{"type": "mute", "user_id": 1}',
        '{"type": "ban", "user_id": 1, "duration": 2592001}',
        '{"type": "slow_mode", "seconds": 3601}',
        '{"type": "slow_mode", "seconds": 1.5}',
        "[" * 100_000,
        '{"type": "message", "text": "' + "x" * 9000 + '"}',
    ],
)
def test_parse_action_refuses_with_one_error_type(frame: str | bytes) -> None:
    with pytest.raises(RuleError) as info:
        parse_action(frame)
    assert info.value.code in ("bad_event", "too_long")


def test_encode_keeps_unicode_and_is_compact() -> None:
    text = encode({"type": "message", "text": "caf\u00e9 \U0001f600"})
    assert text == '{"type":"message","text":"caf\u00e9 \U0001f600"}'
    assert json.loads(text)["text"] == "caf\u00e9 \U0001f600"


def test_heartbeats_expire_and_are_capped() -> None:
    beats = Heartbeats(ttl=30, per_address=10, max_players=3)
    assert beats.beat(1, "ip", "aaaaaaaa", 0.0) is Beat.COUNTED
    assert beats.beat(1, "ip", "bbbbbbbb", 0.0) is Beat.COUNTED
    assert beats.beat(2, "ip", "cccccccc", 10.0) is Beat.COUNTED
    # a known player beating again is not a new one
    assert beats.beat(1, "ip", "aaaaaaaa", 20.0) is Beat.COUNTED
    assert beats.beat(3, "ip", "dddddddd", 20.0) is Beat.FULL
    assert beats.counts(20.0) == {1: 2, 2: 1}
    assert beats.counts(31.0) == {1: 1, 2: 1}  # bbbbbbbb expired
    assert beats.beat(3, "ip", "dddddddd", 31.0) is Beat.COUNTED
    assert beats.counts(100.0) == {}
    assert len(beats) == 0
