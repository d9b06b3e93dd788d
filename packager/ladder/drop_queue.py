"""A small thread-safe queue that is bounded for data and unbounded for control items.

The producer side never blocks: `put` answers False when the bound is reached (the caller
drops and counts), while `put_control` (end of input, a new configuration) always fits, so a
full queue can still be told to stop.
"""

from __future__ import annotations

import collections
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class DropQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.count = 0  # data items queued (control items do not count)
        self._items: collections.deque[tuple[bool, object]] = collections.deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return self.count

    def put(self, item: T) -> bool:
        with self._cond:
            if self.count >= self.maxsize:
                return False
            self.count += 1
            self._items.append((True, item))
            self._cond.notify()
            return True

    def put_control(self, item: object) -> None:
        with self._cond:
            self._items.append((False, item))
            self._cond.notify()

    def get(self) -> object:
        """The next item, data or control, in order; blocks while there is none."""
        with self._cond:
            while not self._items:
                self._cond.wait()
            is_data, item = self._items.popleft()
            if is_data:
                self.count -= 1
            return item
