"""Attempt counters per key in fixed windows, shared by every web process: logins,
registrations, password guesses.

Keys are chosen by the caller ("user:42", "ip:203.0.113.7", "register-email:a@b.c"). An attempt
is counted *before* the password is checked (or hashed), in the same statement that reads the
counters, so concurrent attempts cannot slip past the limit together; a successful login gives
its attempt back.
"""

from __future__ import annotations

from collections.abc import Sequence

from db.types import Executor


async def count_attempt(
    db: Executor, keys: Sequence[str], *, window_s: float
) -> dict[str, tuple[int, float]]:
    """Count one attempt on each key; returns key -> (attempts in the window, seconds until
    the window ends). A window that has ended starts again at this attempt."""
    rows = await db.fetch(
        """INSERT INTO login_throttle AS t (key, failures, window_start)
           SELECT k, 1, now() FROM unnest($1::text[]) AS k
           ON CONFLICT (key) DO UPDATE SET
               failures = CASE WHEN t.window_start + make_interval(secs => $2) <= now()
                               THEN 1 ELSE t.failures + 1 END,
               window_start = CASE WHEN t.window_start + make_interval(secs => $2) <= now()
                                   THEN now() ELSE t.window_start END
           RETURNING key, failures,
               extract(epoch FROM window_start + make_interval(secs => $2) - now())::float8
                   AS remaining""",
        list(keys),
        window_s,
    )
    return {r["key"]: (int(r["failures"]), float(r["remaining"])) for r in rows}


async def forgive(db: Executor, *, clear: Sequence[str], give_back: Sequence[str]) -> None:
    """After a successful login: forget the ``clear`` keys (the account), and give back one
    attempt on the ``give_back`` keys (the client address)."""
    await db.execute(
        """WITH gone AS (DELETE FROM login_throttle WHERE key = ANY($1::text[]))
           UPDATE login_throttle SET failures = greatest(failures - 1, 0)
           WHERE key = ANY($2::text[])""",
        list(clear),
        list(give_back),
    )


async def delete_expired(db: Executor, *, window_s: float) -> int:
    status = await db.execute(
        "DELETE FROM login_throttle WHERE window_start + make_interval(secs => $1) < now()",
        window_s,
    )
    return int(status.split()[-1])
