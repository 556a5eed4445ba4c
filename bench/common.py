"""Shared pieces: timing statistics, the MMLU-Pro data, the embedded default's parts, the routing functions."""

from __future__ import annotations

import gc
import hashlib
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from coe_router.jsonl import read_jsonl
from coe_router.startup import collection_paused

REPO = Path(__file__).resolve().parent.parent


def _mmlu_pro_dir() -> Path:
    """$COE_BENCH_DATA, else mmlu-pro-model-outputs in the data `python -m reports` finds (the repository's copy)."""
    if os.environ.get("COE_BENCH_DATA"):
        return Path(os.environ["COE_BENCH_DATA"])
    from reports.data import find_data_dir

    return find_data_dir() / "mmlu-pro-model-outputs"


DATA = _mmlu_pro_dir()

# The 14 MMLU-Pro categories are the task labels; configs/local.yaml's six descriptions are kept, the others added.
EXTRA_TASKS = {
    "physics": "mechanics, electricity, waves, thermodynamics and modern physics",
    "chemistry": "reactions, stoichiometry, chemical bonds and solutions",
    "engineering": "electrical, mechanical and civil engineering problems",
    "economics": "markets, prices, macroeconomics and economic policy",
    "psychology": "behaviour, cognition, development and mental health",
    "business": "accounting, finance, management and marketing",
    "philosophy": "ethics, logic, metaphysics and philosophers' arguments",
    "other": "general knowledge that fits no other subject",
}


def now() -> float:
    return time.perf_counter()


def ms(seconds: Sequence[float]) -> np.ndarray:
    return np.asarray(seconds, dtype=float) * 1000.0


def p50(values) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def p95(values) -> float:
    return float(np.percentile(values, 95)) if len(values) else float("nan")


def summary(seconds: Sequence[float]) -> dict:
    """p50 / p95 / mean in milliseconds and the number of samples."""
    values = ms(seconds)
    return {"p50_ms": round(p50(values), 3), "p95_ms": round(p95(values), 3),
            "mean_ms": round(float(values.mean()), 3) if len(values) else None, "n": int(len(values))}


def timed(fn: Callable, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


@contextmanager
def quiet_gc() -> Iterator[None]:
    """Garbage collection off inside a measured loop (a collection in the middle of one sample is noise), after
    one collection of what came before."""
    gc.collect()
    with collection_paused():
        yield


@dataclass
class Question:
    id: str
    task: str
    text: str


@dataclass
class Data:
    """All MMLU-Pro questions, their vectors (cached on disk), and the train/test split the benchmarks use."""

    questions: list[Question]
    vectors: np.ndarray
    train: np.ndarray  # row indices of the 70% train split
    test: np.ndarray  # row indices of the 30% test split, shuffled
    index_rows: np.ndarray  # the train rows indexed by the router (a random sample of `train`)
    tasks: dict[str, str] = field(default_factory=dict)


def read_questions(path: Path = DATA / "questions.jsonl") -> list[Question]:
    return [Question(str(row["question_id"]), str(row["category"]), row["question"]) for _, row in read_jsonl(path)]


def cached_vectors(texts: list[str], encoder, model_path: Path, progress: bool = True) -> np.ndarray:
    """Vectors of `texts`, saved under ~/.cache/coe-router/bench keyed by the texts and the model folder."""
    digest = hashlib.sha256(str(model_path).encode())
    for text in texts:
        digest.update(b"\0" + text.encode("utf-8"))
    root = Path(os.environ.get("COE_CACHE_DIR", Path.home() / ".cache" / "coe-router")) / "bench"
    path = root / f"vectors-{digest.hexdigest()[:20]}.npy"
    if path.exists():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors
    chunks = []
    start_time = time.perf_counter()
    for start in range(0, len(texts), 256):
        chunks.append(encoder.encode_uncached(texts[start : start + 256]))
        if progress:
            done = min(start + 256, len(texts))
            print(f"\r  encoding {done}/{len(texts)} questions once (cached for later runs) "
                  f"{time.perf_counter() - start_time:.0f}s", end="", flush=True)
    if progress:
        print()
    vectors = np.concatenate(chunks).astype(np.float32)
    root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors


def load_data(encoder, model_path: Path, n_train: int, seed: int = 0, progress: bool = True) -> Data:
    from coe_router.config import load_config
    from coe_router.evaluation.splits import stratified_split

    questions = read_questions()
    categories = np.array([q.task for q in questions], dtype=object)
    train, test = stratified_split([q.id for q in questions], categories, test_fraction=0.3, seed=seed)
    rng = np.random.default_rng(seed)
    test = rng.permutation(test)
    index_rows = np.sort(rng.permutation(train)[: min(n_train, len(train))])
    vectors = cached_vectors([q.text for q in questions], encoder, model_path, progress)
    local = load_config(None)
    tasks = {task: local.tasks.get(task, EXTRA_TASKS.get(task, task)) for task in sorted(set(categories.tolist()))}
    return Data(questions, vectors, train, test, index_rows, tasks)


def fill_collection(collection, data: Data, rows: np.ndarray, batch: int = 4000) -> None:
    """Upsert rows with their cached vectors (the same vectors ExampleStore.add would compute)."""
    for start in range(0, len(rows), batch):
        part = rows[start : start + batch]
        collection.upsert(
            ids=[data.questions[i].id for i in part],
            embeddings=data.vectors[part],
            documents=[data.questions[i].text for i in part],
            metadatas=[{"task": data.questions[i].task} for i in part],
        )


def make_pool(config, tasks: Sequence[str], models: dict):
    """The configured experts (configs/local.yaml) over `models`, every task ranked [gemma3, smollm2]."""
    from coe_router.routing.pool import ExpertPool
    from coe_router.routing.task_map import TaskMap

    task_map = TaskMap(ranking={task: ["gemma3", "smollm2"] for task in tasks}, default_expert="gemma3")
    return ExpertPool(config.experts, models, task_map)


def make_router(store, classifier, pool, k: int):
    """The routing half of the compiled graph (its router step: intake, retriever, classifier, expert choice),
    through the public `decide`: the benchmark measures what a served request runs, whatever the node signatures."""
    from coe_router.graphs.two_stage import build_two_stage_graph
    from coe_router.routing.decide import decide

    graph = build_two_stage_graph(classifier=classifier, pool=pool, store=store, k=k)

    def route(query: str):
        return decide(graph, query)

    return route


def make_vector_router(store, classifier, pool, k: int):
    """Routing from an already computed query vector (what a micro-batched request does after its embedding),
    through the public classifier and task map."""

    def route(query: str, vector):
        decision = classifier(query, None, store.search_vector(vector, k))
        return pool.task_map.route(decision.task)

    return route
