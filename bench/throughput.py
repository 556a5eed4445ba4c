"""Routed requests per second under concurrency, with and without micro-batching of the query embeddings.

Every mode routes the same slice of test questions in each round (the LRU is cleared before each mode, so no
mode is helped by another's embeddings); the modes' order rotates between rounds and each mode's rate is divided
by the one-at-a-time rate of the same round, so a drift in the machine's load hits numerator and denominator alike.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench.microbatcher import MicroBatcher
from coe_router.retrieval.batching import BatchingEncoder

from .common import Data, make_router, make_vector_router, now


async def _gather_limited(items, fn, concurrency: int):
    semaphore = asyncio.Semaphore(concurrency)

    async def one(item):
        async with semaphore:
            return await fn(item)

    return await asyncio.gather(*(one(item) for item in items))


async def run_throughput(data: Data, encoder, store, batching_store, knn, pool, k: int, *,
                         graph, batching_graph, concurrency: int, per_round: int, rounds: int,
                         max_batch: int = 32, max_wait_s: float = 0.002, workers: int = 1) -> dict:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench"))
    route = make_router(store, knn, pool, k)
    vector_route = make_vector_router(store, knn, pool, k)
    batch_sizes = {"microbatch": [], "graph_batching": []}  # microbatch_bf16 adds to "microbatch" too

    async def sequential(texts):
        for text in texts:
            route(text)

    async def threads(texts):
        await _gather_limited(texts, lambda text: asyncio.to_thread(route, text), concurrency)

    async def microbatch(texts):
        batcher = MicroBatcher(encoder, max_batch=max_batch, max_wait_s=max_wait_s, workers=workers)

        async def one(text):
            return vector_route(text, await batcher.embed(text))

        await _gather_limited(texts, one, concurrency)
        batch_sizes["microbatch"].append(batcher.stats.mean_batch)
        await batcher.aclose()

    async def microbatch_bf16(texts):
        encoder.batch_dtype = "bfloat16"  # batches of 2+ texts under bfloat16 autocast (coe serve: auto on AMX)
        try:
            await microbatch(texts)
        finally:
            encoder.batch_dtype = None

    async def graph_plain(texts):
        await _gather_limited(texts, lambda text: graph.ainvoke({"query": text}), concurrency)

    async def graph_batching(texts):
        before = batching_store.encoder.stats.batches, batching_store.encoder.stats.texts
        await _gather_limited(texts, lambda text: batching_graph.ainvoke({"query": text}), concurrency)
        stats = batching_store.encoder.stats
        batches = stats.batches - before[0]
        batch_sizes["graph_batching"].append((stats.texts - before[1]) / batches if batches else 0.0)

    modes = {"sequential": sequential, "threads": threads, "microbatch": microbatch,
             "microbatch_bf16": microbatch_bf16, "graph_plain": graph_plain, "graph_batching": graph_batching}
    rates = {name: [] for name in modes}
    pool = [data.questions[i].text for i in data.test]
    offset = len(pool) // 2  # not the questions the latency rows used, so nothing is warm in the CPU caches
    warm = pool[offset : offset + 8]
    for fn in modes.values():
        encoder.cache.clear()
        await fn(warm)
    names = list(modes)
    for r in range(rounds):
        texts = pool[offset + 8 + r * per_round : offset + 8 + (r + 1) * per_round]
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            encoder.cache.clear()
            start = now()
            await modes[name](texts)
            rates[name].append(len(texts) / (now() - start))
    base = np.asarray(rates["sequential"])
    out = {}
    for name, values in rates.items():
        values = np.asarray(values)
        out[name] = {"rps_median": round(float(np.median(values)), 1),
                     "ratio_to_sequential": round(float(np.median(values / base)), 2)}
    out["microbatch"]["mean_batch"] = round(float(np.mean(batch_sizes["microbatch"])), 1)
    out["graph_batching"]["mean_batch"] = round(float(np.mean(batch_sizes["graph_batching"])), 1)
    out["graph_batching"]["ratio_to_graph_plain"] = round(
        float(np.median(np.asarray(rates["graph_batching"]) / np.asarray(rates["graph_plain"]))), 2)
    out["settings"] = {"concurrency": concurrency, "requests_per_round": per_round, "rounds": rounds,
                       "max_batch": max_batch, "max_wait_ms": max_wait_s * 1000, "workers": workers}
    return out


def batch_workers(encoder) -> int:
    """Encoder calls to run at once: the cores divided by torch's threads per call (2 on 2 cores, 1 thread)."""
    import os

    import torch

    return max(1, (os.cpu_count() or 1) // max(1, getattr(encoder, "threads", None) or torch.get_num_threads()))


def make_batching_encoder(encoder, max_batch: int = 32, max_wait_s: float = 0.002, workers: int = 1) -> BatchingEncoder:
    return BatchingEncoder(encoder, max_batch=max_batch, max_wait_s=max_wait_s, workers=workers)
