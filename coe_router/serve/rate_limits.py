"""Requests and tokens per minute for each API key (serve/keys.py), on the `limits` package's fixed windows.

Requests per minute are counted when a request arrives, before any work; tokens per minute when an answer is
finished, with the tokens its model calls used (`hit(..., cost=tokens)`), so the request that crosses a key's
token budget is answered and the key's next one is refused until the window resets. A refusal says which limit
and in how many whole seconds the window resets (the `Retry-After` of the 429).

Counters live in process memory, or in PostgreSQL when the service has one (`persistence.checkpointer:
postgres`): `PostgresStorage` keeps one row per key and limit, updated by one atomic UPSERT per hit, so every
replica on that database spends from the same budget. Fixed windows on both, so a budget means the same thing
whichever storage holds it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter

from coe_router.serve.keys import ApiKey

TABLE = "coe_rate_limits"
SETUP_LOCK = 0x636F654C  # "coeL": replicas starting together create the table one at a time
POOL_SIZE = 4
POOL_WAIT_S = 5.0


def is_limited(method: str, path: str) -> bool:
    """Whether a request counts against its key's limits: every POST of the API (completions, resumes,
    feedback), not the reads (/v1/models, /metrics, /healthz/experts), so a scraper's key is not throttled."""
    return method == "POST" and path.startswith("/v1/")


@dataclass(frozen=True)
class Refusal:
    """Why a key's request is refused: the limit it is over and the seconds until its window resets (>= 1)."""

    limit: Literal["rpm", "tpm"]
    retry_after_s: int


class KeyLimiter:
    """Each key's limits on one storage; keys without limits cost nothing."""

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time):
        self.storage, self.clock = storage, clock
        self.window = FixedWindowRateLimiter(storage)

    @staticmethod
    def _item(limit: Literal["rpm", "tpm"], amount: int) -> RateLimitItem:
        return RateLimitItemPerMinute(amount, namespace=f"coe-{limit}")  # own namespaces: rpm 100 != tpm 100

    async def admit(self, key: ApiKey) -> Refusal | None:
        """Count one request of `key`; a Refusal when it is over a limit. A spent token budget is checked
        first, without counting, so a refused request does not use up a request slot."""
        if key.tpm is not None:
            tpm = self._item("tpm", key.tpm)
            if not await self.window.test(tpm, key.name):
                return Refusal("tpm", await self._retry_after(tpm, key))
        if key.rpm is not None:
            rpm = self._item("rpm", key.rpm)
            if not await self.window.hit(rpm, key.name):
                return Refusal("rpm", await self._retry_after(rpm, key))
        return None

    async def spend(self, key: ApiKey, tokens: int) -> None:
        """Count the tokens of one finished answer against `key`'s tokens-per-minute budget."""
        if key.tpm is not None and tokens > 0:
            await self.window.hit(self._item("tpm", key.tpm), key.name, cost=int(tokens))

    async def _retry_after(self, item: RateLimitItem, key: ApiKey) -> int:
        stats = await self.window.get_window_stats(item, key.name)
        return max(1, math.ceil(stats.reset_time - self.clock()))


class PostgresStorage(Storage):
    """Fixed-window counters in one PostgreSQL table, for `limits`' FixedWindowRateLimiter.

    A hit is one statement: the row of the key is inserted, or its count raised, or (its window past) restarted
    at this hit's cost with a new expiry, and the new count returned; PostgreSQL's row lock makes concurrent hits
    from any number of replicas add up exactly. Expiry is the database's clock, so replicas whose clocks differ
    still share one window."""

    def __init__(self, pool, table: str = TABLE):
        super().__init__(wrap_exceptions=False)
        self.pool, self.table = pool, table

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        import psycopg

        return psycopg.Error

    async def _one(self, sql: str, params: dict | tuple = ()):
        async with self.pool.connection() as conn:
            row = await (await conn.execute(sql, params)).fetchone()
        return row[0] if row else None

    async def setup(self) -> None:
        """The table, created once whichever replica starts first."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (key text PRIMARY KEY, "
                               "count bigint NOT NULL, expiry timestamptz NOT NULL)")

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return int(await self._one(
            f"INSERT INTO {self.table} AS r (key, count, expiry) "
            "VALUES (%(key)s, %(amount)s, now() + make_interval(secs => %(expiry)s)) "
            "ON CONFLICT (key) DO UPDATE SET "
            "count = CASE WHEN r.expiry <= now() THEN EXCLUDED.count ELSE r.count + EXCLUDED.count END, "
            "expiry = CASE WHEN r.expiry <= now() THEN EXCLUDED.expiry ELSE r.expiry END "
            "RETURNING count", {"key": key, "amount": amount, "expiry": float(expiry)}))

    async def get(self, key: str) -> int:
        count = await self._one(f"SELECT count FROM {self.table} WHERE key = %s AND expiry > now()", (key,))
        return int(count or 0)

    async def get_expiry(self, key: str) -> float:
        """When the key's window resets, on the local clock (the database's remaining seconds added to it)."""
        left = await self._one(f"SELECT extract(epoch FROM expiry - now()) FROM {self.table} "
                               "WHERE key = %s AND expiry > now()", (key,))
        return time.time() + float(left or 0.0)

    async def check(self) -> bool:
        try:
            return await self._one("SELECT 1") == 1
        except Exception:  # noqa: BLE001 - a health check answers, it does not raise
            return False

    async def reset(self) -> int | None:
        return int(await self._one(f"WITH gone AS (DELETE FROM {self.table} RETURNING 1) SELECT count(*) FROM gone"))

    async def clear(self, key: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(f"DELETE FROM {self.table} WHERE key = %s", (key,))


@contextlib.asynccontextmanager
async def open_limiter(dsn: str | None = None) -> AsyncIterator[KeyLimiter]:
    """A KeyLimiter for the life of the block: on PostgreSQL at `dsn` (a small pool of its own, the table made
    if missing), else in process memory."""
    if dsn is None:
        yield KeyLimiter(MemoryStorage())
        return
    from psycopg_pool import AsyncConnectionPool

    # autocommit: each UPSERT is its own transaction; no prepared statements, so PgBouncer in front works
    pool = AsyncConnectionPool(dsn, min_size=1, max_size=POOL_SIZE, open=False, name="coe-rate-limits",
                               kwargs={"autocommit": True, "prepare_threshold": 0}, timeout=POOL_WAIT_S,
                               check=AsyncConnectionPool.check_connection)
    await pool.open(wait=True, timeout=POOL_WAIT_S * 3)
    try:
        storage = PostgresStorage(pool)
        await storage.setup()
        yield KeyLimiter(storage)
    finally:
        await pool.close()
