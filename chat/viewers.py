"""Viewer counts: HLS players' heartbeats held by this process, and the totals across processes.

Every process reports its viewers per live (WebSocket clients + players whose heartbeat is
recent) into ``chat_viewer_reports`` every interval; a report older than two intervals no longer
counts, so the viewers of a process that stopped reporting vanish within two intervals.
"""

from __future__ import annotations

MAX_PLAYERS = 200_000  # heartbeating players tracked by one process, all lives together


class Heartbeats:
    """Players (by the id they send) per live, each counted until ``ttl`` after its last beat.

    Time is passed in (monotonic seconds)."""

    def __init__(self, ttl: float, max_players: int = MAX_PLAYERS) -> None:
        self.ttl = ttl
        self.max_players = max_players
        self._lives: dict[int, dict[str, float]] = {}
        self._total = 0

    def beat(self, live_id: int, player_id: str, now: float) -> bool:
        """Count a player; False when the process tracks as many players as it may."""
        players = self._lives.get(live_id)
        if players is None or player_id not in players:
            if self._total >= self.max_players:
                self.expire(now)
                if self._total >= self.max_players:
                    return False
                players = self._lives.get(live_id)
            if players is None:
                players = self._lives[live_id] = {}
            self._total += 1
        players[player_id] = now
        return True

    def expire(self, now: float) -> None:
        for live_id, players in list(self._lives.items()):
            for player_id in [p for p, seen in players.items() if seen <= now - self.ttl]:
                del players[player_id]
                self._total -= 1
            if not players:
                del self._lives[live_id]

    def counts(self, now: float) -> dict[int, int]:
        self.expire(now)
        return {live_id: len(players) for live_id, players in self._lives.items()}

    def __len__(self) -> int:
        return self._total
