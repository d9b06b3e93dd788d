"""The PostgreSQL cache: TTL, get-or-compute computing once, batched clean-up."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from db import cache


@pytest.fixture
async def pool(database_url: str):  # type: ignore[no-untyped-def]
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
    yield p
    await p.close()


async def test_set_get_delete_and_json_values(pool: asyncpg.Pool) -> None:
    assert await cache.get(pool, "missing") is None
    await cache.set(pool, "k", {"a": [1, 2, "three"]})
    assert await cache.get(pool, "k") == {"a": [1, 2, "three"]}
    await cache.set(pool, "k", "replaced", ttl=60)
    assert await cache.get(pool, "k") == "replaced"
    await cache.set(pool, "null", None)
    assert await cache.get(pool, "null", cache.MISSING) is None  # a stored null is a value
    assert await cache.delete(pool, "k") is True
    assert await cache.delete(pool, "k") is False
    assert await cache.get(pool, "k", cache.MISSING) is cache.MISSING
    with pytest.raises(ValueError, match="ttl"):
        await cache.set(pool, "bad", 1, ttl=0)


async def test_expired_rows_are_never_returned(pool: asyncpg.Pool) -> None:
    await cache.set(pool, "short", 1, ttl=0.05)
    await cache.set(pool, "long", 2, ttl=60)
    assert await cache.get(pool, "short") == 1
    await asyncio.sleep(0.1)
    assert await cache.get(pool, "short") is None
    assert await cache.get(pool, "long") == 2
    # The row is still there until clean-up: expiry does not depend on it.
    assert await pool.fetchval("SELECT count(*) FROM cache_data WHERE key = 'short'") == 1


async def test_get_or_compute_with_50_concurrent_callers_computes_once(pool: asyncpg.Pool) -> None:
    c = cache.Cache(pool)
    calls = 0

    async def compute() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # long enough for every caller to arrive meanwhile
        return {"answer": 42}

    results = await asyncio.gather(*(c.get_or_compute("k", compute, ttl=30) for _ in range(50)))
    assert calls == 1
    assert results == [{"answer": 42}] * 50
    assert await cache.get(pool, "k") == {"answer": 42}


async def test_get_or_compute_once_across_processes(database_url: str) -> None:
    """Two Cache objects on separate pools stand for two processes: still one computation."""
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=5) for _ in range(2)]
    try:
        caches = [cache.Cache(p) for p in pools]
        calls = 0

        async def compute() -> int:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return 7

        results = await asyncio.gather(
            *(caches[i % 2].get_or_compute("shared", compute, ttl=30) for i in range(50))
        )
        assert calls == 1
        assert set(results) == {7}
    finally:
        for p in pools:
            await p.close()


async def test_get_or_compute_error_reaches_every_waiter_and_is_not_cached(
    pool: asyncpg.Pool,
) -> None:
    c = cache.Cache(pool)

    async def boom() -> int:
        await asyncio.sleep(0.02)
        raise RuntimeError("upstream down")

    results = await asyncio.gather(
        *(c.get_or_compute("e", boom, ttl=30) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await cache.get(pool, "e", cache.MISSING) is cache.MISSING

    async def ok() -> int:
        return 1

    assert await c.get_or_compute("e", ok, ttl=30) == 1


async def test_cleanup_deletes_expired_rows_in_batches(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO cache_data (key, value, expires_at) "
        "SELECT 'old' || g, '1', now() - interval '1 minute' FROM generate_series(1, 2500) g"
    )
    await cache.set(pool, "fresh", 1, ttl=60)
    await cache.set(pool, "forever", 2)
    assert await cache.cleanup_expired(pool, batch=1000) == 2500
    keys = {r["key"] for r in await pool.fetch("SELECT key FROM cache_data")}
    assert keys == {"fresh", "forever"}
    assert await cache.cleanup_expired(pool) == 0


async def test_cleanup_task_runs_periodically_and_survives_errors(pool: asyncpg.Pool) -> None:
    await cache.set(pool, "gone", 1, ttl=0.01)
    task = asyncio.create_task(cache.run_cleanup(pool, interval=0.05))
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if await pool.fetchval("SELECT count(*) FROM cache_data") == 0:
                break
        assert await pool.fetchval("SELECT count(*) FROM cache_data") == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_computations_that_use_the_pool_cannot_starve_it(database_url: str) -> None:
    """More concurrent misses than pool connections, each computing with a query of its own:
    no connection may be held while computing, or this deadlocks."""
    small = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        c = cache.Cache(small)

        async def compute_with_query(i: int) -> int:
            await asyncio.sleep(0.02)
            return int(await small.fetchval("SELECT $1::int * 2", i))

        results = await asyncio.wait_for(
            asyncio.gather(
                *(c.get_or_compute(f"k{i}", lambda i=i: compute_with_query(i), ttl=30)
                  for i in range(6))
            ),
            timeout=20,
        )  # fmt: skip
        assert results == [0, 2, 4, 6, 8, 10]
        leases = await small.fetchval("SELECT count(*) FROM cache_data WHERE key LIKE 'lease:%'")
        assert leases == 0
    finally:
        await small.close()
