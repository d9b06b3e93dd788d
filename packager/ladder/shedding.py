"""Load shedding of the ladder: which rung to stop when the machine cannot keep up, and when
to bring it back.

Sans-IO: the ladder's decode thread calls `Shedder.tick` once per source packet with the time
and the depth of its packet queue, and acts on the answer (stop that rung's encoder, start a
fresh one at this keyframe). No clock is read here, so tests drive it with plain numbers.

The rules (the numbers: `LadderPolicy`'s thresholds, with STREAMD_HLS_LADDER_BACKLOG at its 3 s):

- Overload is the packet queue holding more than `shed_at` of its bound (1.5 s of video)
  without a break for `shed_after_s` (2 s): a hiccup of a shared machine is not enough.
- Then the most expensive running rung (pixels x fps) is shed. Another one only after
  `settle_s` (3 s), and only if the backlog did not shrink since the last shed (a shed takes a
  while to drain a backlog; a shrinking one means it worked).
- Calm is the queue under `calm_at` of its bound (3 packets). After a whole cool-down of calm
  (`restore_after_s`, 10 s) the last shed rung restarts at the next source keyframe; one rung
  per calm period, most recently shed (cheapest) first.
- A rung shed again within `stable_s` (60 s) of its restore doubles its cool-down, up to
  `restore_after_max_s` (320 s): a machine that cannot carry it does not flap every 10 s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

RungState = Literal["waiting", "active", "shed"]


@dataclass(frozen=True, slots=True)
class LadderPolicy:
    """Queue bounds and the shedding/restoring thresholds. The first two come from settings
    (STREAMD_HLS_LADDER_BACKLOG, STREAMD_HLS_LADDER_SHEDDING: PackagerOptions.ladder_policy);
    the thresholds are tuning constants."""

    queue_packets: int  # source video packets waiting to be decoded, at most
    shedding: bool  # off: a slow ladder only lags (then drops at the queue bound)
    rung_queue_frames: int = 3  # scaled frames waiting for each encoder
    shed_at: float = 0.5  # queue fill (fraction) at which the ladder is behind
    shed_after_s: float = 2.0  # ... for this long without a break: not a passing hiccup
    calm_at: float = 0.1  # queue fill under which the machine is keeping up
    settle_s: float = 3.0  # at least this long between two sheds
    restore_after_s: float = 10.0  # calm time before a shed rung restarts
    restore_after_max_s: float = 320.0  # cool-down cap after repeated sheds
    stable_s: float = 60.0  # a rung restored this long ago is back to the base cool-down


@dataclass(eq=False)
class RungLoad:
    """What the shedder knows of one rung. `state` is read by the decode thread to route
    frames: "waiting" rungs become "active" at a keyframe with pts >= `start_from`."""

    name: str
    cost: int  # pixels per second
    cooldown: float
    state: RungState = "waiting"
    start_from: float = -math.inf
    shed_time: float = -math.inf
    restored_time: float | None = None
    sheds: int = 0
    restores: int = 0


class Shedder:
    def __init__(self, policy: LadderPolicy) -> None:
        self.policy = policy
        self._behind_since: float | None = None
        self._busy_time = -math.inf  # last time the queue was above the calm level
        self._shed_time = -math.inf
        self._shed_depth = 0
        self._stack: list[RungLoad] = []  # shed rungs, most recent last

    def tick(
        self, now: float, depth: int, rungs: Sequence[RungLoad], keyframe_pts: int | None
    ) -> tuple[RungLoad | None, RungLoad | None]:
        """(rung shed now, rung restored at this keyframe); mostly (None, None)."""
        policy = self.policy
        if not policy.shedding:
            return None, None
        shed = None
        if depth >= policy.shed_at * policy.queue_packets:
            self._busy_time = now
            if self._behind_since is None:
                self._behind_since = now
            running = [r for r in rungs if r.state != "shed"]
            sustained = now - self._behind_since >= policy.shed_after_s
            worse = self._shed_time == -math.inf or depth >= self._shed_depth
            if running and sustained and worse and now - self._shed_time >= policy.settle_s:
                shed = max(running, key=lambda r: r.cost)
                self._shed(shed, now, depth)
        else:
            self._behind_since = None
            if depth > policy.calm_at * policy.queue_packets:
                self._busy_time = now
        restored = None
        if keyframe_pts is not None and self._stack:
            candidate = self._stack[-1]
            if now - max(self._busy_time, candidate.shed_time) >= candidate.cooldown:
                restored = self._stack.pop()
                restored.state = "waiting"
                restored.start_from = keyframe_pts
                restored.restored_time = now
                restored.restores += 1
                self._busy_time = now  # one rung per calm period
        return shed, restored

    def _shed(self, rung: RungLoad, now: float, depth: int) -> None:
        policy = self.policy
        flapping = rung.restored_time is not None and now - rung.restored_time < policy.stable_s
        rung.cooldown = (
            min(rung.cooldown * 2, policy.restore_after_max_s)
            if flapping
            else policy.restore_after_s
        )
        rung.state = "shed"
        rung.shed_time = now
        rung.sheds += 1
        self._stack.append(rung)
        self._shed_time, self._shed_depth = now, depth
