"""Checkpointers from the config: where runs are saved by thread id (review pauses, multi-turn threads).

`none`, `memory` (one process), `sqlite` (one machine) or `postgres` (any number of replicas on one database: a run
paused on one replica resumes on another). The PostgreSQL connection string is read from the environment variable
the config names (`persistence.dsn_env`), never from the config file, and never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import sqlite3
import time
from typing import AsyncIterator

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from coe_router import schema
from coe_router.config import ConfigError, RouterConfig

STATE_TYPES = ("Candidate", "Consultation", "LabelledExample", "Plan", "RetrievedExample", "Route", "RoutingDecision",
               "Step", "Subtask", "TaskDecision")

# Two replicas starting at once would both run LangGraph's table migrations and collide on the migrations table;
# setup() runs under this advisory lock (an arbitrary constant that names this use).
SETUP_LOCK = 0x636F6552  # "coeR"
POSTGRES_POOL_SIZE = 8
POOL_WAIT_S = 5.0
"""How long a request waits for a database connection: during an outage it is a 503 after this, not after
psycopg_pool's default of 30 s."""
CONNECT_TIMEOUT_S = 15.0


PERSISTENCE_MODULES = ("psycopg", "psycopg_pool", "sqlite3", "aiosqlite")


def is_persistence_outage(exc: BaseException) -> bool:
    """A failure of the checkpoint database itself (Postgres down, pool exhausted, SQLite unwritable), which is
    nobody's request's fault and passes once the database is back (the pools reconnect by themselves)."""
    return any(kind.__module__.split(".")[0] in PERSISTENCE_MODULES and issubclass(kind, Exception)
               and kind.__name__ in ("OperationalError", "PoolTimeout", "InterfaceError", "DatabaseError",
                                     "PoolClosed", "TooManyRequests", "ConnectionTimeout")
               for kind in type(exc).__mro__)


def _writable_sqlite(config: RouterConfig):
    """The SQLite file of `persistence.path`, its folder made; a path that cannot be written is a config error."""
    path = config.resolve_path(config.persistence.path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder")
        with path.open("ab"):
            pass
    except OSError as exc:
        raise ConfigError(f"persistence.path: cannot write the thread store {path}: "
                          f"{exc.strerror or exc}") from None
    return path


def checkpoint_serializer() -> JsonPlusSerializer:
    """LangGraph's serializer with the router's state types allowed by name, so checkpoints load them without
    the "unregistered type" warning today and keep loading when LangGraph blocks unlisted types."""
    return JsonPlusSerializer(allowed_msgpack_modules=[(schema.__name__, name) for name in STATE_TYPES])


def with_router_serde(checkpointer):
    """A checkpointer given to `build_graph` on LangGraph's default serializer (any type allowed, a warning for each
    unregistered one as it loads) is used through a shallow copy that loads the router's types by name: the same
    storage, no "Deserializing unregistered type" warning on every later turn. A serializer the caller chose is
    kept as it is."""
    serde = getattr(checkpointer, "serde", None)
    if type(serde) is not JsonPlusSerializer or getattr(serde, "_allowed_msgpack_modules", None) is not True:
        return checkpointer
    clone = copy.copy(checkpointer)
    clone.serde = checkpoint_serializer()
    return clone


def postgres_dsn(config: RouterConfig) -> str:
    """The PostgreSQL connection string of `persistence.checkpointer: postgres`, from the variable `dsn_env` names."""
    name = config.persistence.dsn_env
    dsn = os.environ.get(name, "").strip()
    if not dsn:
        raise ConfigError(f"persistence.dsn_env: the environment variable {name} is not set (checkpointer: postgres "
                          "reads the PostgreSQL connection string from it)")
    return dsn


def _postgres_modules():
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
        from langgraph.checkpoint.postgres import PostgresSaver  # noqa: F401
    except ImportError:
        raise ConfigError("persistence.checkpointer: postgres needs langgraph-checkpoint-postgres and "
                          "psycopg[binary,pool] (pip install 'coe-router[postgres]')") from None


def _connection_kwargs() -> dict:
    """What LangGraph's Postgres savers expect of a connection: autocommit, dict rows, no server-side prepared
    statements (so a transaction-mode pooler such as PgBouncer in front of the database works)."""
    from psycopg.rows import dict_row

    return {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}


def _unreachable(config: RouterConfig, exc: Exception) -> ConfigError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"persistence.dsn_env: cannot connect to PostgreSQL through ${config.persistence.dsn_env}: "
                       f"{first}")


def _connect_timeout() -> int:
    return int(CONNECT_TIMEOUT_S)


def _setup_under_lock(lock, setup) -> None:
    """Run `setup()` (LangGraph's idempotent table migrations) once at a time across replicas, holding an advisory
    lock on the connection `lock`.

    The lock is polled with pg_try_advisory_lock rather than waited on: a session blocked in pg_advisory_lock
    holds a snapshot, and the migrations' CREATE INDEX CONCURRENTLY waits for every older snapshot, so a blocking
    wait would deadlock two replicas starting together."""
    deadline = time.monotonic() + 120
    while not lock.execute("SELECT pg_try_advisory_lock(%s)", (SETUP_LOCK,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise TimeoutError("another process held the checkpoint setup lock for 120 s")
        time.sleep(0.1)
    try:
        setup()
    finally:
        lock.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))


async def _asetup_under_lock(lock, setup) -> None:
    deadline = time.monotonic() + 120
    while not (await (await lock.execute("SELECT pg_try_advisory_lock(%s)", (SETUP_LOCK,))).fetchone())[0]:
        if time.monotonic() > deadline:
            raise TimeoutError("another process held the checkpoint setup lock for 120 s")
        await asyncio.sleep(0.1)
    try:
        await setup()
    finally:
        await lock.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))


def postgres_checkpointer(config: RouterConfig):
    """A PostgresSaver on a connection pool (it reconnects after a database restart), its tables set up. The pool
    lives as long as the process; close it with `saver.conn.close()` when done."""
    _postgres_modules()
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg_pool import ConnectionPool

    dsn = postgres_dsn(config)
    pool = ConnectionPool(dsn, min_size=1, max_size=POSTGRES_POOL_SIZE, kwargs=_connection_kwargs(), open=False,
                          name="coe-checkpoints", timeout=POOL_WAIT_S, check=ConnectionPool.check_connection)
    try:
        # A plain connection first: a wrong DSN fails here at once with PostgreSQL's own reason, not a pool timeout.
        with psycopg.connect(dsn, autocommit=True, connect_timeout=_connect_timeout()) as lock:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            saver = PostgresSaver(pool, serde=checkpoint_serializer())
            _setup_under_lock(lock, saver.setup)
    except Exception as exc:  # noqa: BLE001 - psycopg errors, pool timeouts: one line naming the setting
        pool.close()
        raise _unreachable(config, exc) from None
    return saver


def checkpointer_from_config(config: RouterConfig):
    """The configured checkpointer: none, in-process memory, a SQLite file (langgraph-checkpoint-sqlite) or
    PostgreSQL (langgraph-checkpoint-postgres)."""
    kind = config.persistence.checkpointer
    if kind in ("none", "parent"):  # parent: compiled without one, LangGraph gives a subgraph its parent's
        return None
    if kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        return InMemorySaver(serde=checkpoint_serializer())
    if kind == "postgres":
        return postgres_checkpointer(config)
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:
        raise ConfigError("persistence.checkpointer: sqlite needs langgraph-checkpoint-sqlite (pip install it)") from None
    path = _writable_sqlite(config)
    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False), serde=checkpoint_serializer())


@contextlib.asynccontextmanager
async def _async_postgres(config: RouterConfig) -> AsyncIterator[object]:
    _postgres_modules()
    import psycopg
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg_pool import AsyncConnectionPool

    dsn = postgres_dsn(config)
    # check_connection: a connection broken by a database restart is replaced before a request gets it
    pool = AsyncConnectionPool(dsn, min_size=1, max_size=POSTGRES_POOL_SIZE, kwargs=_connection_kwargs(),
                               open=False, name="coe-checkpoints", timeout=POOL_WAIT_S,
                               check=AsyncConnectionPool.check_connection)
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True,
                                                         connect_timeout=_connect_timeout()) as lock:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            saver = AsyncPostgresSaver(pool, serde=checkpoint_serializer())
            await _asetup_under_lock(lock, saver.setup)
    except Exception as exc:  # noqa: BLE001 - psycopg errors, pool timeouts: one line naming the setting
        await pool.close()
        raise _unreachable(config, exc) from None
    try:
        yield saver
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def open_async_checkpointer(config: RouterConfig) -> AsyncIterator[object | None]:
    """The configured checkpointer for an async service, open for the life of the block: AsyncSqliteSaver (the
    sync SqliteSaver has no async methods) for sqlite, AsyncPostgresSaver on a pool for postgres, in-process
    memory, or None."""
    kind = config.persistence.checkpointer
    if kind == "parent":
        raise ConfigError("persistence.checkpointer: parent is for a router inside a LangGraph app or the Agent "
                          "Server; a service needs its own (memory, sqlite or postgres)")
    if kind == "postgres":
        async with _async_postgres(config) as saver:
            yield saver
        return
    if kind != "sqlite":
        yield checkpointer_from_config(config)
        return
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    except ImportError:
        raise ConfigError("persistence.checkpointer: sqlite in `coe serve` needs aiosqlite (pip install aiosqlite)") from None
    path = _writable_sqlite(config)
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        saver.serde = checkpoint_serializer()
        yield saver
