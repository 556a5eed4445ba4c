"""The live knn router at real scale: start time and decision latency with memories of 7k, 30k and 100k rows x 29
experts, through `build_graph` and `decide` (what `coe serve` runs).

The 7k memory is the real one: every MMLU-Pro question all 29 models answered, less the held-out query questions.
Larger memories add synthetic rows made from the real ones as in bench/scaling.py: vector normalise(0.7 a + 0.3 b +
noise), a and b two real memory questions of one category, the row's outcomes and category a's. Their vectors are
written into the memory collection beforehand (as a first start would have), so every start measured is a restart:
- `first_start_s`: the first build_graph (indexes the examples; above the exact-scan size, builds the HNSW graph
  and caches it on disk);
- `start_in_process_s`: build_graph in a process that already imported everything (a rebuilt graph);
- `start_fresh_process_s`: `from coe_router import build_graph; build_graph(config)` in a new interpreter (median
  of --knn-fresh-starts), and `build_graph_fresh_process_s` the build_graph call alone (its lazy imports of torch, Chroma and
  langchain-openai included);
- `decision`: query text -> the router's decision (`coe_router.decide`), against `floor`: one uncached query
  embedding, both on the same fresh held-out questions, interleaved, each first on every other question, with
  garbage collection off while they run (as in the routing rows); `ratio_p50` is p50(decision) / p50(floor) (the
  target's), and, question by question, `above_floor_p50_ms` the median of decision - floor and
  `paired_ratio_p50` the median of decision / floor (steadier: the floor's spread over question lengths moves
  the ratio of medians by a few hundredths);
- `hnsw_agreement`: above the exact-scan size, the share of queries whose pick equals an exact scan's.
The 29 experts point at an endpoint nobody serves: no expert is called.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from .common import DATA, Data, now, quiet_gc, summary

FRESH_START = ("import sys, time; t = time.perf_counter(); from coe_router import build_graph; "
               "b = time.perf_counter(); build_graph(sys.argv[1]); e = time.perf_counter(); "
               "print(round(e - t, 3), round(e - b, 3))")


class _Precomputed:
    """The real encoder, answering from known vectors where it can (the memory was embedded once before)."""

    def __init__(self, encoder, known: dict[str, np.ndarray]):
        self.encoder, self.known, self.model_id = encoder, known, getattr(encoder, "model_id", None)

    def encode(self, texts):
        missing = [t for t in texts if t not in self.known]
        if missing:
            self.known.update(zip(missing, self.encoder.encode(missing)))
        return np.stack([self.known[t] for t in texts])


def _memory(data: Data, held_out: set[int], size: int, seed: int = 0):
    """(models, texts, categories, outcome rows, vectors) of a memory of `size` rows (0: every real one)."""
    with (DATA / "correctness.csv").open(encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        outcomes = {row[0]: row for row in reader if all(cell != "" for cell in row[2:])}
    by_id = {q.id: i for i, q in enumerate(data.questions)}
    real = [by_id[qid] for qid in outcomes if qid in by_id and by_id[qid] not in held_out]
    rng = np.random.default_rng(seed)
    size = size or len(real)
    rows = real if size >= len(real) else sorted(rng.permutation(real)[:size].tolist())
    texts = [data.questions[i].text for i in rows]
    cats = [data.questions[i].task for i in rows]
    scores = [outcomes[data.questions[i].id][2:] for i in rows]
    vectors = data.vectors[rows]
    extra = size - len(rows)
    if extra > 0:
        by_task: dict[str, list[int]] = {}
        for j, cat in enumerate(cats):
            by_task.setdefault(cat, []).append(j)
        a = rng.integers(0, len(rows), size=extra)
        b = np.array([rng.choice(by_task[cats[j]]) for j in a])
        synth = 0.7 * vectors[a] + 0.3 * vectors[b] + rng.normal(0, 0.01, size=(extra, vectors.shape[1]))
        synth = (synth / np.linalg.norm(synth, axis=1, keepdims=True)).astype(np.float32)
        texts += [f"[synthetic {n}] {texts[j]}" for n, j in enumerate(a)]
        cats += [cats[j] for j in a]
        scores += [scores[j] for j in a]
        vectors = np.concatenate([vectors, synth])
    return header[2:], texts, cats, scores, vectors


def _write_config(folder: Path, models: list[str], texts, cats, scores, examples) -> Path:
    with (folder / "questions.jsonl").open("w", encoding="utf-8") as out:
        for n, (text, cat) in enumerate(zip(texts, cats)):
            out.write(json.dumps({"question_id": f"m{n}", "category": cat, "question": text}) + "\n")
    with (folder / "correctness.csv").open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["question_id", "category", *models])
        writer.writerows([f"m{n}", cat, *row] for n, (cat, row) in enumerate(zip(cats, scores)))
    with (folder / "examples.jsonl").open("w", encoding="utf-8") as out:
        for n, (text, task) in enumerate(examples):
            out.write(json.dumps({"question_id": f"e{n}", "question": text, "category": task}) + "\n")
    tasks = sorted(set(cats))
    config = {
        "models": {m: {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": m} for m in models},
        "tasks": {t: t for t in tasks},
        "experts": {m: {"model": m} for m in models},
        "task_map": {"unknown": models[0]},
        "classifier": {"kind": "knn"},
        "retriever": {"collection": "bench-knn-scale", "persist_dir": str(folder / "chroma"), "k": 5,
                      "examples": "examples.jsonl"},
        "router": {"kind": "knn", "outcomes": "correctness.csv", "questions": "questions.jsonl"},
    }
    path = folder / "router.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _fresh_start(config: Path) -> tuple[float, float]:
    """(seconds from `import coe_router` to a built graph, seconds of the build_graph call alone) in a new
    interpreter."""
    done = subprocess.run([sys.executable, "-c", FRESH_START, str(config)], capture_output=True, text=True,
                          timeout=900, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"fresh-process build_graph failed: {done.stderr[-2000:]}")
    total, build = done.stdout.strip().splitlines()[-1].split()
    return float(total), float(build)


def _agreement(models, vectors, scores, cats, queries) -> float:
    from coe_router.routing.query_router import KnnRouter

    matrix = np.asarray(scores, dtype=float)
    exact = KnnRouter(models, vectors, matrix, cats, exact_max_rows=len(vectors) + 1).route(queries)
    approximate = KnnRouter(models, vectors, matrix, cats).route(queries)
    return round(float((exact == approximate).mean()), 4)


def run(data: Data, encoder, sizes: list[int], n_queries: int, fresh_starts: int = 3) -> dict:
    """One row per memory size (see module doc), each started `fresh_starts` times in a new interpreter."""
    from coe_router import build_graph
    from coe_router.builder import _retriever_client
    from coe_router.config import load_config
    from coe_router.retrieval.memory_index import EXACT_MAX_ROWS
    from coe_router.retrieval.memory_vectors import memory_vectors
    from coe_router.routing.decide import decide

    query_rows = [int(i) for i in data.test[:n_queries]]
    queries = [data.questions[i].text for i in query_rows]
    examples = [(data.questions[i].text, data.questions[i].task) for i in data.index_rows[:200]]
    out = {}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="coe-bench-knn-") as tmp:
            folder = Path(tmp)
            models, texts, cats, scores, vectors = _memory(data, set(query_rows), size)
            config_path = _write_config(folder, models, texts, cats, scores, examples)
            config = load_config(config_path)
            known = dict(zip(texts, vectors))
            known.update(zip([t for t, _ in examples], data.vectors[data.index_rows[:200]]))
            memory_vectors(_retriever_client(config), config.retriever.collection, _Precomputed(encoder, known), texts)
            start = now()
            build_graph(config, encoder=encoder)  # indexes the examples, builds (and caches) an HNSW graph
            first = now() - start
            start = now()
            graph = build_graph(config, encoder=encoder)
            row = {"rows": len(texts), "experts": len(models), "first_start_s": round(first, 3),
                   "start_in_process_s": round(now() - start, 3), "approximate": len(texts) > EXACT_MAX_ROWS}
            if fresh_starts > 0:
                starts = [_fresh_start(config_path) for _ in range(fresh_starts)]
                row["start_fresh_process_s"] = float(np.median([total for total, _ in starts]))
                row["build_graph_fresh_process_s"] = float(np.median([build for _, build in starts]))
            decisions, floor = [], []
            if getattr(encoder, "cache", None) is not None:
                encoder.cache.clear()  # every size starts from the same cold LRU (the queries repeat across sizes)
            timed = ((decisions, lambda text: decide(graph, text)), (floor, lambda text: encoder.encode_uncached([text])))
            with quiet_gc():
                for n, query in enumerate(queries):
                    # in turn first: a text's second forward pass is faster than its first (by 0.5-0.9 ms at 7k
                    # rows), so a fixed order would hand that to whichever column always came second
                    for samples, run_one in (timed if n % 2 == 0 else timed[::-1]):
                        start = now()
                        run_one(query)
                        samples.append(now() - start)
            row["decision"], row["floor"] = summary(decisions), summary(floor)
            row["ratio_p50"] = round(row["decision"]["p50_ms"] / row["floor"]["p50_ms"], 3)
            paired_decisions, paired_floor = np.array(decisions), np.array(floor)  # question by question
            row["above_floor_p50_ms"] = round(float(np.median(paired_decisions - paired_floor)) * 1000, 3)
            row["paired_ratio_p50"] = round(float(np.median(paired_decisions / paired_floor)), 3)
            if row["approximate"]:
                row["hnsw_agreement"] = _agreement(models, vectors, scores, cats,
                                                   data.vectors[query_rows].astype(np.float32))
            out[str(size)] = row
    return out
