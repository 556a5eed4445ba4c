"""`coe serve`: the router as an OpenAI-compatible HTTP API."""

from __future__ import annotations

import argparse
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from coe_router.builder import build_graph
    from coe_router.config import load_config
    from coe_router.retrieval.batching import BatchingEncoder
    from coe_router.retrieval.encoder import load_encoder, resolve_batch_dtype
    from coe_router.serve.app import create_app

    config = load_config(args.config)
    # Concurrent requests share query-embedding calls, and a lone request never waits. Batches of two or more
    # queries run in bfloat16 where the CPU has AMX (--batch-dtype auto); single queries always in float32.
    sentence_encoder = load_encoder(config.retriever.embedding_package, config.retriever.embedding_path)
    sentence_encoder.batch_dtype = resolve_batch_dtype(args.batch_dtype)
    encoder = BatchingEncoder(sentence_encoder, workers=sentence_encoder.workers)  # one batch per encoder thread
    app = create_app(build_graph(config, encoder=encoder, progress=True), token_env=args.token_env,
                     max_query_chars=config.limits.max_query_chars)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve the router as an OpenAI-compatible HTTP API (model `coe`)")
    serve.add_argument("--config", type=Path)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token-env", default="COE_API_TOKEN",
                       help="env var holding a bearer token; when it is set, requests must send it")
    serve.add_argument("--batch-dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                       help="precision of micro-batched query embeddings (auto: bfloat16 on CPUs with AMX)")
    serve.set_defaults(run=_serve)
