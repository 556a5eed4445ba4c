"""`coe serve`: the router as an OpenAI-compatible HTTP API."""

from __future__ import annotations

import argparse
from pathlib import Path


def served_from_config(config, encoder=None, progress: bool = True):
    """An async context manager that builds the service's graphs on the server's event loop: the config's own
    graph and, with a planner configured, the planning graph (`coe-plan`), sharing models, store, checkpointer and
    the one live expert pool the service owns (the admin API edits it). On PostgreSQL, admin edits are shared with
    the other replicas on that database (serve/admin_edits.py): the earlier ones applied before the first request,
    later ones as they come."""
    import contextlib

    from coe_router.builder import build_graph, expert_pool, needs_examples, open_example_store
    from coe_router.models.factory import build_models, used_models
    from coe_router.persistence import open_async_checkpointer
    from coe_router.routing.feedback import FeedbackRecorder
    from coe_router.routing.task_map import expert_prices
    from coe_router.serve.admin import ExpertAdmin
    from coe_router.serve.menu import Served
    from coe_router.serve.costs import call_prices

    def build_model(cfg, name):
        return build_models(cfg, {name})[name]

    @contextlib.asynccontextmanager
    async def served():
        # Review pauses are a single-shot feature: the planning graph (`coe-plan`) routes its steps without them.
        no_review = {**config.persistence.model_dump(), "review_unknown": False}
        plan_config = config.replace(mode="plan", persistence=no_review) if config.planner.model else None
        names = used_models(config) | (used_models(plan_config) if plan_config else set())
        models = build_models(config, names)
        store = open_example_store(config, encoder, progress=progress) if needs_examples(config) else None
        pool = expert_pool(config, models)
        async with open_async_checkpointer(config) as checkpointer, \
                _shared_edits(config, ExpertAdmin(pool, config, build_model).replay) as edits:
            parts = {"models": models, "store": store, "encoder": encoder, "checkpointer": checkpointer, "pool": pool}
            graph = build_graph(config, **parts)
            plan = graph if config.mode == "plan" else build_graph(plan_config, **parts) if plan_config else None
            journal = config.resolve_path(config.router.feedback) if config.router.feedback else None
            yield Served(graph=graph, plan_graph=plan, prices=expert_prices(config),
                         feedback=FeedbackRecorder(graph, journal), call_prices=call_prices(config), config=config,
                         build_model=build_model, pool=pool, admin_edits=edits)

    return served


def _shared_edits(config, replay):
    """Admin edits shared through the service's PostgreSQL when it has one, else none (each process its own)."""
    import contextlib

    from coe_router.persistence import postgres_dsn
    from coe_router.serve.admin_edits import open_shared_edits

    if config.persistence.checkpointer != "postgres":
        return contextlib.nullcontext()
    return open_shared_edits(postgres_dsn(config), replay)


def _limiter(config):
    """Per-key counters in the service's PostgreSQL when it has one (replicas share each key's budget), else in
    memory."""
    import functools

    from coe_router.persistence import postgres_dsn
    from coe_router.serve.rate_limits import open_limiter

    return functools.partial(open_limiter, postgres_dsn(config) if config.persistence.checkpointer == "postgres"
                             else None)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from coe_router.builder import needs_examples
    from coe_router.config import load_config
    from coe_router.retrieval.batching import BatchingEncoder
    from coe_router.retrieval.encoder import load_encoder, resolve_batch_dtype
    from coe_router.serve.app import create_app
    from coe_router.config.schema import QUERY_LEVEL_KINDS
    from coe_router.serve.keys import service_keys

    config = load_config(args.config)
    keys = service_keys(args.keys, args.token_env)  # a bad keys file stops here, before any model loads
    # Concurrent requests share query-embedding calls, and a lone request never waits. Batches of two or more
    # queries run in bfloat16 where the CPU has AMX (--batch-dtype auto); single queries always in float32.
    encoder = None
    if needs_examples(config) or config.router.kind in QUERY_LEVEL_KINDS:   # a rules classifier embeds nothing: skip the load
        sentence_encoder = load_encoder(config.retriever.embedding_package, config.retriever.embedding_path)
        sentence_encoder.batch_dtype = resolve_batch_dtype(args.batch_dtype)
        encoder = BatchingEncoder(sentence_encoder, workers=sentence_encoder.workers)  # one batch per encoder thread
    app = create_app(served_from_config(config, encoder), token_env=args.token_env,
                     max_query_chars=config.limits.max_query_chars, deadline_s=args.deadline_s,
                     stream_idle_s=args.stream_idle_s, max_body_bytes=args.max_body_bytes,
                     body_timeout_s=args.body_timeout_s, keys=keys, limiter=_limiter(config))
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve the router as an OpenAI-compatible HTTP API (model `coe`)")
    serve.add_argument("--config", type=Path)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token-env", default="COE_API_TOKEN",
                       help="env var holding a bearer token; when it is set, requests must send it")
    serve.add_argument("--keys", type=Path, metavar="FILE",
                       help="a keys file (YAML or JSON): named API keys, each with optional rpm and tpm limits; "
                            "requests must send one of them (default: $COE_KEYS_FILE)")
    serve.add_argument("--batch-dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                       help="precision of micro-batched query embeddings (auto: bfloat16 on CPUs with AMX)")
    serve.add_argument("--deadline-s", type=float, default=120.0,
                       help="longest a request may take, across attempts and fallbacks (504 after it)")
    serve.add_argument("--stream-idle-s", type=float, default=30.0,
                       help="longest a stream may stay silent before it ends with an error event")
    serve.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024,
                       help="largest request body accepted (413 over it, before any work; default 4 MiB)")
    serve.add_argument("--body-timeout-s", type=float, default=30.0,
                       help="longest a client may take to send its request body (408 after it)")
    serve.set_defaults(run=_serve)
