"""Type aliases shared by the query modules."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# Anything that runs a query: a pool (one statement, auto-acquired) or a held connection.
Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy
# A held connection: one of its own, or one acquired from a pool (transactions need one).
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
