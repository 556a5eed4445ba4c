"""Admin edits shared by the replicas of one deployment, through the PostgreSQL they already share.

Every edit of the admin API (serve/admin.py: an expert added or replaced, an expert removed, a task remapped) is a
row of the table `coe_admin_edits`: a version number (`bigserial`), the edit as JSON and when it was made. The
replica that receives the call writes the row in that call, then applies the edit to its own pool; every other
replica on the database replays the rows it has not applied yet, in version order, onto its own live pool, through
the same validation and the same `build_model` path as the admin route (`ExpertAdmin.replay`):

- at start, before the first request: every edit so far, so a replica started after the edits has them all;
- then every `POLL_S` (1 s) in a background task: one indexed SELECT of the rows past the replica's version.

Why a background poll, rather than a version check before each request or LISTEN/NOTIFY: it keeps the database off
the request path (no request waits for it, none can fail because of it), it bounds the delay whether or not a
replica has traffic, and it needs no dedicated listening connection to keep alive across database restarts. One
small query a second per replica is nothing beside the checkpoints' writes. A poll that fails is logged (once per
outage, and again when the database is back) and the replica serves on with the pool it has.

Ordering: a writer holds a transaction-scoped advisory lock from before it reads the log until its row commits, so
versions are numbered in commit order (a replica past version N never misses a row committed later with a smaller
number), and it first replays any row it has not applied yet, so its edit is validated against the pool as it
stands after every earlier edit. A row the database did not take is applied nowhere: the admin call is a 503.

Idempotent: a replica remembers the last version it applied and skips the rows up to it; a replayed add replaces an
expert of the same name (one the config file already has from `write_config`), a replayed remove of an expert that
is not there does nothing. A row that no longer validates on a replica (its config lacks the model) is logged and
skipped, so one bad row never holds back the rows after it. The log only grows (admin edits are rare); to go back
to what the config files say, `DELETE FROM coe_admin_edits` and restart the replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from coe_router.redact import redact

TABLE = "coe_admin_edits"
SETUP_LOCK = 0x636F6541  # "coeA": replicas starting together create the table one at a time
EDIT_LOCK = 0x636F6545   # "coeE": one admin edit at a time across the replicas, so versions follow commit order
POLL_S = 1.0
POOL_SIZE = 2
POOL_WAIT_S = 5.0
LOCK_TIMEOUT_S = 30  # an edit waits this long for another replica's edit to commit, then fails (a 503)

log = logging.getLogger("coe_router.serve.admin")
T = TypeVar("T")


def describe(edit: dict) -> str:
    """One line naming an edit, for the logs."""
    op = edit.get("op")
    if op == "add":
        expert = edit.get("expert") or {}
        return f"add {expert.get('name')!r} on {expert.get('model')!r}, tasks {expert.get('tasks') or []}"
    if op == "remove":
        return f"remove {edit.get('name')!r}"
    if op == "remap":
        return f"remap {edit.get('task')!r} to {edit.get('experts')}"
    return f"unknown edit {op!r}"


class SharedEdits:
    """The admin edit log of the replicas on one database, and the version of it this replica has applied.

    `pool` is a psycopg (sync) ConnectionPool; `replay(edit)` applies one logged edit to this replica's live pool
    (ExpertAdmin.replay) and raises when it does not validate here. Edits made here go through `commit`; the rows
    other replicas wrote arrive through `catch_up`, which `poll` calls every second. Both hold one lock, so this
    replica applies edits one at a time, in version order."""

    def __init__(self, pool, replay: Callable[[dict], Any], table: str = TABLE):
        self.pool, self.replay, self.table = pool, replay, table
        self.version = 0  # the last row applied (or skipped) here
        self._lock = threading.Lock()
        self._failing = False

    def setup(self) -> None:
        """The table, created once whichever replica starts first."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (version bigserial PRIMARY KEY, "
                         "edit jsonb NOT NULL, made_at timestamptz NOT NULL DEFAULT now())")

    def catch_up(self) -> int:
        """Apply the rows past this replica's version, in order; how many there were. A database error is
        raised, and nothing is skipped: the next call starts from the same version."""
        with self._lock, self.pool.connection() as conn:
            return self._replay_newer(conn)

    def commit(self, edit: dict, prepare: Callable[[], None], apply: Callable[[], T]) -> T:
        """An edit made on this replica: under the edit lock, the rows other replicas wrote first, then
        `prepare()` (validation against the pool as it now is, a new expert's model built, the config file written
        when asked; raising here writes nothing), the row, the commit; then `apply()` on the live pool, and its
        result returned."""
        with self._lock:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (EDIT_LOCK,))
                self._replay_newer(conn)
                prepare()
                version = conn.execute(f"INSERT INTO {self.table} (edit) VALUES (%s) RETURNING version",
                                       (_jsonb(edit),)).fetchone()[0]
            result = apply()
            self.version = version
            log.info("admin edit %d made here: %s", version, describe(edit))
            return result

    def _replay_newer(self, conn) -> int:
        rows = conn.execute(f"SELECT version, edit FROM {self.table} WHERE version > %s ORDER BY version",
                            (self.version,)).fetchall()
        for version, edit in rows:
            try:
                self.replay(edit)
            except Exception as exc:  # noqa: BLE001 - one row that does not fit this replica must not block the rest
                log.error("admin edit %d (%s) does not apply on this replica, skipped: %s", version, describe(edit),
                          redact(str(exc)))
            else:
                log.info("admin edit %d from the shared log: %s", version, describe(edit))
            self.version = version
        return len(rows)

    async def poll(self, every_s: float = POLL_S) -> None:
        """Catch up every `every_s` seconds until cancelled; a failure is logged, never raised."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await asyncio.to_thread(self.catch_up)
            except Exception as exc:  # noqa: BLE001 - requests go on with the pool this replica has
                if not self._failing:
                    log.error("cannot read the shared admin edits (serving on with this replica's pool; retrying "
                              "every %g s): %s", every_s, redact(f"{type(exc).__name__}: {exc}"))
                self._failing = True
            else:
                if self._failing:
                    log.info("the shared admin edits are readable again (at version %d)", self.version)
                self._failing = False


def _jsonb(value: dict):
    from psycopg.types.json import Jsonb

    return Jsonb(value)


@contextlib.asynccontextmanager
async def open_shared_edits(dsn: str, replay: Callable[[dict], Any],
                            every_s: float = POLL_S) -> AsyncIterator[SharedEdits]:
    """SharedEdits on PostgreSQL at `dsn` for the life of the block: a small pool of its own, the table made if
    missing, every edit so far applied (before the block starts), and the poll running in the background."""
    from psycopg_pool import ConnectionPool

    # autocommit outside the writers' explicit transactions; no prepared statements, so PgBouncer in front works
    pool = ConnectionPool(dsn, min_size=1, max_size=POOL_SIZE, open=False, name="coe-admin-edits",
                          kwargs={"autocommit": True, "prepare_threshold": 0}, timeout=POOL_WAIT_S,
                          check=ConnectionPool.check_connection)
    try:
        await asyncio.to_thread(pool.open, wait=True, timeout=POOL_WAIT_S * 3)
        edits = SharedEdits(pool, replay)
        await asyncio.to_thread(edits.setup)
        if applied := await asyncio.to_thread(edits.catch_up):
            log.info("applied %d admin edit(s) from the shared log at start (version %d)", applied, edits.version)
        poller = asyncio.create_task(edits.poll(every_s), name="coe-admin-edits-poll")
        try:
            yield edits
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
    finally:
        await asyncio.to_thread(pool.close)
