"""What a database call raises when it fails, for the handlers that log, retry or answer 503.

- ``OSError``: the socket (refused, reset, unreachable);
- ``asyncpg.PostgresError``: an error the server sent;
- ``asyncpg.InterfaceError``: a closed connection or pool, a connection lost mid-query;
- ``TimeoutError``: a connect, pool-acquire or command timeout.
"""

from __future__ import annotations

import asyncpg

DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)

# DB_ERRORS less TimeoutError, for the two handlers that have always let a timeout through
# (streamd.cli's last resort, where a timeout need not be the database's and "database error"
# would mislabel it; web.mail's outbox). Kept apart so that behaviour did not change when the
# copies were merged.
DB_ERRORS_BUT_TIMEOUT = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
