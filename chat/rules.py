"""Message rules, without I/O: text clean-up, per-user rate limits and slow mode.

Time is passed in (``now``, monotonic seconds), so the rules are tested without sleeping.
"""

from __future__ import annotations

import unicodedata
from collections import deque
from dataclasses import dataclass

MAX_TEXT = 500  # characters, after clean-up (chat_messages.content has the same CHECK)
MAX_RAW_TEXT = 4 * MAX_TEXT  # what a client may send before clean-up is even tried

# Bidirectional overrides and isolates reorder the text around them (a message could appear to
# say something else); zero-width and BOM characters hide content. Removed with controls.
_INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2066\u2067\u2068\u2069\ufeff"
)


@dataclass(frozen=True, slots=True)
class RuleError(Exception):
    """A message breaks a rule: sent back to its author as an ``error`` event."""

    code: str
    message: str
    retry_after: float | None = None


def clean_text(raw: str) -> str:
    """NFC-normalised text without control, surrogate, private-use or invisible formatting
    characters, whitespace runs at the ends trimmed; RuleError when empty or too long.

    Nothing here escapes HTML: clients must render the text as text (textContent), never as
    markup; the server never renders it.
    """
    if len(raw) > MAX_RAW_TEXT:
        raise RuleError("too_long", f"messages are at most {MAX_TEXT} characters")
    text = unicodedata.normalize("NFC", raw)
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs", "Co", "Cn") or ch in _INVISIBLE:
            if ch in "\t\n\r":
                kept.append(" ")  # a line break becomes a space, not a glued word
            continue
        kept.append(ch)
    text = "".join(kept).strip()
    if not text:
        raise RuleError("empty", "the message is empty")
    if len(text) > MAX_TEXT:
        raise RuleError("too_long", f"messages are at most {MAX_TEXT} characters")
    return text


class RateLimiter:
    """At most ``limit`` messages per ``window`` seconds per key (sliding window).

    Keys are user ids of signed-in clients. Entries whose newest message is older than the
    window are dropped as others arrive, so memory follows the users active in a window.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._sent: dict[int, deque[float]] = {}
        self._checks = 0

    def check(self, key: int, now: float) -> None:
        """Count a message now, or raise RuleError("rate_limited") without counting it."""
        self._checks += 1
        if self._checks % 256 == 0:
            self._prune(now)
        times = self._sent.get(key)
        if times is None:
            times = self._sent[key] = deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            retry = times[0] + self.window - now
            raise RuleError(
                "rate_limited",
                f"at most {self.limit} messages every {self.window:g} s; wait {retry:.1f} s",
                retry_after=retry,
            )
        times.append(now)

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._sent.items() if not t or t[-1] <= now - self.window]:
            del self._sent[key]

    def __len__(self) -> int:
        return len(self._sent)


class SlowMode:
    """One message per ``seconds`` per user in a room (0: off)."""

    def __init__(self) -> None:
        self.seconds = 0
        self._last: dict[int, float] = {}

    def set(self, seconds: int) -> None:
        self.seconds = seconds
        if not seconds:
            self._last.clear()

    def check(self, key: int, now: float) -> None:
        if not self.seconds:
            return
        last = self._last.get(key)
        if last is not None and now - last < self.seconds:
            retry = self.seconds - (now - last)
            raise RuleError(
                "slow_mode",
                f"slow mode: one message every {self.seconds} s; wait {retry:.1f} s",
                retry_after=retry,
            )
        if len(self._last) > 10_000:  # users who posted long ago no longer matter
            self._last = {k: t for k, t in self._last.items() if now - t < self.seconds}
        self._last[key] = now
