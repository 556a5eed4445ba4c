"""Memory of a long-running `coe serve`: its RSS after each batch of requests, which must level off.

A real `coe serve` process routes with the knn classifier over the shipped examples (MiniLM, Chroma), its expert
an instant fake upstream (tests/service_upstream.py), so what grows is the service's own memory. Batches of
`per_batch` requests, `concurrency` at a time, every query different (so the embedding cache fills as it would);
the row is the process's RSS after each batch and the growth per request of the last batch.

    python -m bench.memory [--quick] [--batches N] [--per-batch N] [--json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coe_router.config import default_config_path
from tests.service_upstream import CoeServe, Upstream

EXAMPLES = default_config_path().parent / "local-examples.jsonl"
TASKS = ("math", "computer science", "biology", "history", "law", "health")


def _config(upstream_url: str, folder: str) -> dict:
    model = {"provider": "openai", "model": "answer", "base_url": upstream_url}
    return {"models": {"m": model}, "tasks": {t: t for t in TASKS}, "experts": {"expert": {"model": "m"}},
            "task_map": {t: ["expert"] for t in TASKS}, "default_expert": "expert", "classifier": {"kind": "knn"},
            "retriever": {"collection": "memory-bench", "persist_dir": f"{folder}/chroma", "examples": str(EXAMPLES)}}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def measure(batches: int, per_batch: int, concurrency: int = 16, env: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory() as folder, Upstream() as upstream:
        service = CoeServe(_config(upstream.url, folder), folder, "memory", args=("--token-env", "COE_BENCH_NO_TOKEN"),
                           env=dict(env or {}))
        with service, httpx.Client(base_url=service.url, timeout=60,
                                   limits=httpx.Limits(max_connections=concurrency)) as client:
            def ask(n: int) -> int:
                return client.post("/v1/chat/completions", json={"model": "coe", "messages": [
                    {"role": "user", "content": f"question number {n}: what is {n} times {n + 7}?"}]}).status_code

            ask(-1)
            rss = [_rss_mb(service.process.pid)]
            statuses: dict[int, int] = {}
            with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                for batch in range(batches):
                    for status in pool.map(ask, range(batch * per_batch, (batch + 1) * per_batch)):
                        statuses[status] = statuses.get(status, 0) + 1
                    upstream.clear()  # the fake upstream's own record of requests is not the service's memory
                    rss.append(_rss_mb(service.process.pid))
    last_kb = round((rss[-1] - rss[-2]) * 1024 / per_batch, 1)
    half = batches // 2  # the first batches fill bounded caches; the later ones show whether it levelled off
    later_kb = round((rss[-1] - rss[half]) * 1024 / (per_batch * (batches - half)), 1)
    return {"per_batch": per_batch, "concurrency": concurrency, "rss_mb": rss, "last_batch_kb_per_request": last_kb,
            "later_batches_kb_per_request": later_kb, "statuses": statuses}


def run(quick: bool = False, batches: int | None = None, per_batch: int | None = None) -> dict:
    return measure(batches or (3 if quick else 4), per_batch or (300 if quick else 2000))


def format_lines(result: dict) -> list[str]:
    steps = " -> ".join(f"{mb:,.0f}" for mb in result["rss_mb"])
    return ["", f"  coe serve RSS over batches of {result['per_batch']} requests ({result['concurrency']} concurrent, "
                f"knn routing, instant expert): {steps} MB; last batch "
                f"{result['last_batch_kb_per_request']} KB per request, later half of the batches "
                f"{result['later_batches_kb_per_request']} KB per request"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batches", type=int)
    parser.add_argument("--per-batch", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.quick, args.batches, args.per_batch)
    print(json.dumps(result, indent=2) if args.json else "\n".join(format_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
