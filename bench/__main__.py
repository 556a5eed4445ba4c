"""`python -m bench`: routing speed of coe-router against its floor (one query embedding) and a peer.

    python -m bench              # full run, about 10-15 minutes on 2 cores
    python -m bench --quick      # smaller samples, about 5 minutes
    python -m bench --json out.json   # also write every number as JSON (--json - prints JSON instead of the table)

See docs/PERFORMANCE.md for what each row measures and the results on the reference machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("LANGSMITH_TRACING", None)
os.environ.pop("LANGCHAIN_TRACING_V2", None)

SECTIONS = ("routing", "classifiers", "graph", "throughput", "ceiling", "scaling", "peer", "leaderboard", "rss",
            "knn_scale", "metrics", "faults", "service_cost", "memory", "replicas")

FULL = dict(queries=300, hybrid_queries=100, llm_queries=30, graph_queries=150, peer_queries=300,
            rounds=5, per_round=256, concurrency=64, scaling="1000,10000,100000", scaling_queries=200,
            scaling_chroma_max=100_000, fault_requests=8, service_rounds=4, knn_sizes="all,30000,100000",
            knn_queries=600)
QUICK = dict(queries=100, hybrid_queries=20, llm_queries=8, graph_queries=50, peer_queries=100,
             rounds=3, per_round=128, concurrency=64, scaling="1000,10000,100000", scaling_queries=100,
             scaling_chroma_max=10_000, fault_requests=3, service_rounds=2, knn_sizes="all,30000,100000",
             knn_queries=300)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller samples (about 2 minutes)")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON to PATH ('-': print JSON, no table)")
    p.add_argument("--train", type=int, default=2000, help="train questions in the router's index (default 2000)")
    p.add_argument("--queries", type=int, help="test queries for the floor / knn rows")
    p.add_argument("--hybrid-queries", type=int, help="test queries for the hybrid classifier (SmolLM2 when unsure)")
    p.add_argument("--llm-queries", type=int, help="test queries for the llm classifier (SmolLM2 every time)")
    p.add_argument("--graph-queries", type=int, help="queries for the graph-overhead row")
    p.add_argument("--peer-queries", type=int, help="queries for the semantic-router comparison")
    p.add_argument("--rounds", type=int, help="throughput rounds (each mode routes the same slice per round)")
    p.add_argument("--per-round", type=int, help="requests per throughput round")
    p.add_argument("--concurrency", type=int, help="concurrent requests in the throughput modes")
    p.add_argument("--scaling", help="index sizes for the top-k scaling rows, e.g. 1000,10000,100000")
    p.add_argument("--scaling-queries", type=int, help="queries per index size")
    p.add_argument("--scaling-chroma-max", type=int, help="largest size also built in Chroma (HNSW)")
    p.add_argument("--knn-sizes", help="knn-router memory sizes for the knn_scale rows ('all': the real MMLU-Pro "
                   "memory), e.g. all,30000,100000")
    p.add_argument("--knn-queries", type=int, help="held-out queries per knn memory size")
    p.add_argument("--knn-fresh-starts", type=int, default=3, help="fresh-process starts per knn memory size "
                   "(the median is reported; default 3)")
    p.add_argument("--fault-requests", type=int, help="requests per fault in the faults section (coe serve process)")
    p.add_argument("--service-rounds", type=int, help="rounds per side in the service-cost section (64 concurrent "
                   "requests to llama.cpp's server, directly and through coe serve)")
    p.add_argument("--skip", default="", help=f"comma-separated sections to skip: {','.join(SECTIONS)}")
    p.add_argument("--peer-self-index", action="store_true", help="let semantic-router encode its utterances itself")
    p.add_argument("--encoder-threads", type=int, help="torch threads per encoder call (sets COE_ENCODER_THREADS; "
                   "default 1, 0 = torch's default of one per core)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(SECTIONS)
    if unknown:
        p.error(f"--skip: unknown sections {sorted(unknown)} (choose from {', '.join(SECTIONS)})")
    return args


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": model, "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "load_avg_at_start": [round(x, 2) for x in load] if load else None}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.encoder_threads is not None:
        os.environ["COE_ENCODER_THREADS"] = str(args.encoder_threads)
    started = time.perf_counter()
    results: dict = {"mode": "quick" if args.quick else "full", "machine": machine(), "settings": {}}

    import coe_router.builder  # noqa: F401 - import cost outside the timings
    from coe_router.config import load_config
    from coe_router.graphs.two_stage import build_two_stage_graph
    from coe_router.retrieval.encoder import embedding_model_path, load_encoder
    from coe_router.retrieval.store import ExampleStore, chroma_collection
    from coe_router.routing.classifiers import HybridClassifier, KnnClassifier, LlmClassifier

    from . import ceiling, extras, peer, routing, scaling, throughput
    from .common import fill_collection, load_data, make_pool, make_router

    log("loading MiniLM")
    t = time.perf_counter()
    encoder = load_encoder()
    model_path = embedding_model_path()
    import torch

    results["encoder"] = {"load_s": round(time.perf_counter() - t, 2), "fast_path": encoder.fast_path,
                          "torch_threads": encoder.threads or torch.get_num_threads(), "workers": encoder.workers}
    data = load_data(encoder, model_path, args.train, args.seed)
    config = load_config(None)
    k = config.retriever.k
    tasks = list(data.tasks)
    from tests.fakes import ScriptedChat

    # Experts never run in the routing rows; in the graph rows they are instant fakes.
    fake = {m: ScriptedChat(reply=lambda prompt: "ok", seen=[]) for m in {e.model for e in config.experts.values()}}
    pool = make_pool(config, tasks, fake)
    results["settings"] = {
        "train_indexed": len(data.index_rows), "test_pool": len(data.test), "tasks": len(tasks), "k": k,
        "hybrid_threshold": config.classifier.threshold, **{key: getattr(args, key) for key in
        ("queries", "hybrid_queries", "llm_queries", "graph_queries", "peer_queries", "rounds", "per_round",
         "concurrency", "scaling", "scaling_queries", "scaling_chroma_max", "seed")},
    }

    collection = chroma_collection(f"bench-router-{os.getpid()}", None)
    fill_collection(collection, data, data.index_rows)
    store = ExampleStore(collection, encoder)
    knn = KnnClassifier(tasks)

    if "routing" not in args.skip:
        log(f"floor and knn routing over {args.queries} test questions")
        legacy = routing.LegacyStore(collection, encoder)
        results["routing"] = routing.floor_and_knn(data, encoder, store, legacy, knn, pool, k, args.queries)
        results["hot_path"] = routing.hot_path_costs(data, store, collection, knn, pool, k, min(args.queries, 200))

    floor_p50 = results.get("routing", {}).get("floor", {}).get("p50_ms") or float("nan")
    if "classifiers" not in args.skip:
        log(f"hybrid ({args.hybrid_queries}) and llm ({args.llm_queries}) classifiers on SmolLM2 (llama.cpp)")
        from coe_router.models.factory import build_models

        name = config.classifier.model
        t = time.perf_counter()
        smol = build_models(config, {name})[name]
        llm = LlmClassifier(data.tasks, smol, use_examples=config.classifier.use_examples)
        results["llm_load_s"] = round(time.perf_counter() - t, 2)
        hybrid = HybridClassifier(KnnClassifier(tasks), llm, config.classifier.threshold)
        results["classifiers"] = routing.classifier_rows(
            data, encoder, store, {"hybrid": hybrid, "llm": llm}, pool, k,
            {"hybrid": args.hybrid_queries, "llm": args.llm_queries}, floor_p50)

    graph = batching_graph = None
    if {"graph", "throughput"} - args.skip:
        graph = build_two_stage_graph(classifier=knn, pool=pool, store=store, tasks=tasks, k=k)
    if "graph" not in args.skip:
        log(f"graph overhead over {args.graph_queries} questions (instant fake expert)")
        results["graph"] = routing.graph_overhead(data, encoder, graph, make_router(store, knn, pool, k),
                                                  args.graph_queries)

    if "throughput" not in args.skip:
        log(f"throughput: {args.rounds} rounds x {args.per_round} requests, concurrency {args.concurrency}")
        workers = throughput.batch_workers(encoder)
        batching_encoder = throughput.make_batching_encoder(encoder, workers=workers)
        batching_store = ExampleStore(collection, batching_encoder)
        batching_graph = build_two_stage_graph(classifier=knn, pool=pool, store=batching_store, tasks=tasks, k=k)
        results["throughput"] = asyncio.run(throughput.run_throughput(
            data, encoder, store, batching_store, knn, pool, k, graph=graph, batching_graph=batching_graph,
            concurrency=args.concurrency, per_round=args.per_round, rounds=args.rounds, workers=workers))
        batching_encoder.close()

    if "ceiling" not in args.skip:
        log("encoder cost per text by batch size (the ceiling of micro-batching)")
        results["ceiling"] = ceiling.batch_ceiling(data, encoder, rounds=3 if args.quick else 6, store=store, knn=knn,
                                                   k=k, agreement_queries=args.queries)

    if "scaling" not in args.skip:
        sizes = [int(s) for s in str(args.scaling).split(",") if s.strip()]
        log(f"top-k scaling at {sizes} examples ({args.scaling_queries} queries each)")
        results["scaling"] = {}
        for size in sizes:
            results["scaling"].update(scaling.scaling(data, encoder, [size], args.scaling_queries, k,
                                                      chroma=size <= args.scaling_chroma_max))

    if "knn_scale" not in args.skip:
        from . import knn_scale

        sizes = [0 if s.strip() == "all" else int(s) for s in str(args.knn_sizes).split(",") if s.strip()]
        log(f"knn router at scale: memories of {args.knn_sizes} rows x 29 experts, {args.knn_queries} queries each")
        results["knn_scale"] = knn_scale.run(data, encoder, sizes, args.knn_queries, args.knn_fresh_starts)

    if "metrics" not in args.skip:
        from . import metrics_cost

        log("metrics: what the Prometheus metrics add to a request")
        results["metrics"] = metrics_cost.run(2000 if args.quick else 20_000)

    if "peer" not in args.skip:
        log(f"peer: semantic-router on the same {args.peer_queries} queries")
        results["peer"] = peer.compare(data, encoder, store, knn, pool, k, args.peer_queries, model_path,
                                       args.peer_self_index)

    if "leaderboard" not in args.skip:
        log("leaderboard build on the MMLU-Pro outcomes")
        results["leaderboard"] = extras.leaderboard_time()

    if "rss" not in args.skip:
        log("embedded default in a fresh process: build_graph() + one question")
        results["rss"] = extras.embedded_default_rss()

    if "faults" not in args.skip:
        from . import faults

        log(f"faults: time to answer behind each expert fault ({args.fault_requests} requests each, coe serve)")
        results["faults"] = faults.run(args.quick, args.fault_requests)

    if "memory" not in args.skip:
        from . import memory

        log("memory: coe serve RSS over batches of requests")
        results["memory"] = memory.run(args.quick)

    if "service_cost" not in args.skip:
        from . import service_cost

        log(f"service cost: coe serve vs llama.cpp server directly, {args.service_rounds} rounds x 64 concurrent")
        results["service_cost"] = service_cost.run(args.quick, args.service_rounds)

    if "replicas" not in args.skip:
        from . import replicas

        log("replicas: one coe serve against two on one PostgreSQL + one Chroma server (local experts)")
        results["replicas"] = replicas.run_replicas(requests=16 if args.quick else 32, log=log)

    results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    from .report import format_report, targets

    results["targets"] = targets(results)
    if "service_cost" in results:
        from .service_cost import target

        results["targets"].append(target(results["service_cost"]))
    if args.json:
        text = json.dumps(results, indent=2)
        if args.json == "-":
            print(text)
            return 0
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print(format_report(results) + service_lines(results))
    if "replicas" in results:
        from .replicas import format_results

        print(format_results(results["replicas"]))
    return 0


def service_lines(results: dict) -> str:
    """The service sections' rows (faults, service cost), printed after the routing report."""
    lines = []
    if "faults" in results:
        from .faults import format_lines

        lines += format_lines(results["faults"])
    if "service_cost" in results:
        from .service_cost import format_lines

        lines += format_lines(results["service_cost"])
    if "memory" in results:
        from .memory import format_lines

        lines += format_lines(results["memory"])
    return "\n".join(lines) and "\n" + "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
