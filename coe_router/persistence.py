"""Checkpointers from the config: where runs are saved by thread id (review pauses, multi-turn threads)."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import AsyncIterator

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from coe_router import schema
from coe_router.config import ConfigError, RouterConfig

STATE_TYPES = ("Candidate", "Consultation", "LabelledExample", "Plan", "RetrievedExample", "Route", "RoutingDecision",
               "Step", "Subtask", "TaskDecision")


def checkpoint_serializer() -> JsonPlusSerializer:
    """LangGraph's serializer with the router's state types allowed by name, so checkpoints load them without
    the "unregistered type" warning today and keep loading when LangGraph blocks unlisted types."""
    return JsonPlusSerializer(allowed_msgpack_modules=[(schema.__name__, name) for name in STATE_TYPES])


def checkpointer_from_config(config: RouterConfig):
    """The configured checkpointer: none, in-process memory, or a SQLite file (langgraph-checkpoint-sqlite)."""
    kind = config.persistence.checkpointer
    if kind == "none":
        return None
    if kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        return InMemorySaver(serde=checkpoint_serializer())
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:
        raise ConfigError("persistence.checkpointer: sqlite needs langgraph-checkpoint-sqlite (pip install it)") from None
    path = config.resolve_path(config.persistence.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False), serde=checkpoint_serializer())


@contextlib.asynccontextmanager
async def open_async_checkpointer(config: RouterConfig) -> AsyncIterator[object | None]:
    """The configured checkpointer for an async service, open for the life of the block: AsyncSqliteSaver (the
    sync SqliteSaver has no async methods) for sqlite, in-process memory, or None."""
    kind = config.persistence.checkpointer
    if kind != "sqlite":
        yield checkpointer_from_config(config)
        return
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    except ImportError:
        raise ConfigError("persistence.checkpointer: sqlite in `coe serve` needs aiosqlite (pip install aiosqlite)") from None
    path = config.resolve_path(config.persistence.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        saver.serde = checkpoint_serializer()
        yield saver
