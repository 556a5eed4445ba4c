"""Run the configured experts over a labelled multiple-choice set and record who got what right (outcomes).

This is how a user builds a leaderboard for their own models (CoE-Ops eq. 4): every (question, expert) pair is
asked once, with a concurrency limit and retries, and each result is appended to a journal next to the output
(`OUT.journal.jsonl`) as soon as it is known. Killing the run loses at most the answers in flight; running it
again skips every pair already in the journal, so nothing is asked twice and nothing is lost. The correctness
CSV (`question_id,category,<expert>...` with 1/0) is rewritten atomically from the journal at the end.

Past one machine, a run is split across workers: shard K of N (`shard_questions`) takes the questions whose
question_id hashes to K, a fixed partition that does not depend on the order or the machine, so N workers with the
same questions file ask every (question, expert) pair exactly once. `merge_correctness` joins their CSVs into the
CSV one unsplit run writes, refusing two files that disagree about a cell.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Iterable

from pydantic import BaseModel

from coe_router.jsonl import JsonlError, read_jsonl, repair_torn_tail, require
from coe_router.routing.expert_call import EmptyAnswerError, ask_expert
from coe_router.routing.pool import ExpertPool


class MCQuestion(BaseModel):
    question_id: str
    category: str
    question: str
    options: list[str]
    answer: str


def read_mc_questions(path: str | Path, limit: int | None = None) -> list[MCQuestion]:
    """Multiple-choice questions (questions.jsonl with `options` and an `answer` letter)."""
    questions = []
    for number, row in read_jsonl(path):
        require(row, ("question_id", "category", "question"), path, number)
        if not row.get("options") or not row.get("answer"):
            raise JsonlError(f"{path}:{number}: a multiple-choice question needs `options` and an `answer` letter")
        questions.append(MCQuestion(question_id=str(row["question_id"]), category=str(row["category"]),
                                    question=row["question"], options=row["options"], answer=str(row["answer"])))
        if limit and len(questions) >= limit:
            break
    return questions


class Journal:
    """Append-only record of finished (question, expert) pairs; a torn last line (a kill mid-write) is cut off
    before anything is appended, so that pair is asked again and the next record starts on a line of its own."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.done: dict[tuple[str, str], int] = {}
        repair_torn_tail(path)
        if path.exists():
            for _, row in read_jsonl(path, skip_torn=True):
                try:
                    self.done[(row["question_id"], row["expert"])] = int(row["correct"])
                except (KeyError, TypeError, ValueError):
                    continue

    def record(self, question_id: str, expert: str, correct: int, choice: str | None) -> None:
        line = json.dumps({"question_id": question_id, "expert": expert, "correct": correct, "choice": choice})
        with self.lock:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
                out.flush()
                os.fsync(out.fileno())
            self.done[(question_id, expert)] = correct


def _with_retries(call: Callable[[], str | None], retries: int, backoff_s: float) -> str | None:
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception:  # noqa: BLE001 - retried, then re-raised to the caller
            if attempt == retries:
                raise
            time.sleep(backoff_s * 2**attempt)
    return None


def run_outcomes(
    pool: ExpertPool,
    questions: Iterable[MCQuestion],
    out: str | Path,
    *,
    experts: list[str] | None = None,
    concurrency: int = 2,
    retries: int = 2,
    backoff_s: float = 1.0,
    progress: bool = True,
) -> dict[str, int]:
    """Ask every expert every question not yet in the journal; write the correctness CSV. Returns counts."""
    from tqdm import tqdm

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    questions = list(questions)
    experts = experts or pool.names()
    journal = Journal(out.with_name(out.name + ".journal.jsonl"))
    todo = [(q, e) for q in questions for e in experts if (q.question_id, e) not in journal.done]
    counts = {"asked": 0, "skipped": len(questions) * len(experts) - len(todo), "failed": 0}

    def choice(question: MCQuestion, expert: str) -> str | None:
        spec, model = pool.expert(expert)
        try:
            return ask_expert(expert, spec, model, question.question, question.options, question.category).choice
        except EmptyAnswerError:
            return None  # an answer, and a wrong one: no letter chosen

    def ask(question: MCQuestion, expert: str) -> None:
        answer = _with_retries(lambda: choice(question, expert), retries, backoff_s)
        journal.record(question.question_id, expert, int(answer == question.answer), answer)

    bar = tqdm(total=len(todo), desc="asking experts", unit="answer", disable=not progress)
    with ThreadPoolExecutor(max_workers=concurrency) as executor:
        pending = {executor.submit(ask, q, e) for q, e in todo[:concurrency * 2]}
        queued = iter(todo[concurrency * 2:])
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                error = future.exception()
                if error is not None and not isinstance(error, Exception):
                    for other in pending:
                        other.cancel()
                    raise error  # Ctrl-C or exit inside an expert call stops the run; the journal keeps what is done
                if error is not None:
                    counts["failed"] += 1
                else:
                    counts["asked"] += 1
                bar.update(1)
                following = next(queued, None)
                if following is not None:
                    pending.add(executor.submit(ask, *following))
    bar.close()
    write_correctness_csv(out, questions, experts, journal.done)
    return counts


def write_correctness_csv(out: Path, questions: list[MCQuestion], experts: list[str],
                          done: dict[tuple[str, str], int]) -> None:
    """question_id,category,<expert>...; an empty cell marks a pair that failed every retry (asked again next run)."""
    temporary = out.with_name(f".{out.name}.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question_id", "category", *experts])
        for q in questions:
            writer.writerow([q.question_id, q.category, *(done.get((q.question_id, e), "") for e in experts)])
    os.replace(temporary, out)


def shard_of(question_id: str, shards: int) -> int:
    """The shard (1..shards) a question belongs to: a stable hash of its id, the same on every machine and run."""
    digest = hashlib.sha256(question_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards + 1


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` -> (K, N), with 1 <= K <= N."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 1/2), got {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard {text}: K must be between 1 and N")
    return k, n


def shard_questions(questions: Iterable[MCQuestion], shard: int, shards: int) -> list[MCQuestion]:
    """The questions of shard `shard` of `shards` (question order kept)."""
    return [q for q in questions if shard_of(q.question_id, shards) == shard]


class MergeConflictError(ValueError):
    """Two outcome files disagree about the same (question, expert) cell or a question's category."""


def read_correctness_csv(path: str | Path) -> tuple[list[str], dict[str, tuple[str, dict[str, str]]]]:
    """(experts, {question_id: (category, {expert: "1" | "0" | ""})}) of a correctness CSV."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or header[:2] != ["question_id", "category"]:
            raise ValueError(f"{path}: not a correctness CSV (the header must start with question_id,category)")
        experts = header[2:]
        if len(set(experts)) != len(experts):
            raise ValueError(f"{path}: an expert column appears twice")
        rows: dict[str, tuple[str, dict[str, str]]] = {}
        for number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{number}: {len(row)} cells, the header has {len(header)}")
            question_id, category, cells = row[0], row[1], dict(zip(experts, row[2:]))
            if question_id in rows:
                raise ValueError(f"{path}:{number}: question {question_id!r} appears twice")
            bad = [c for c in cells.values() if c not in ("1", "0", "")]
            if bad:
                raise ValueError(f"{path}:{number}: cells must be 1, 0 or empty, got {bad[0]!r}")
            rows[question_id] = (category, cells)
    return experts, rows


def merge_correctness(paths: list[str | Path], out: str | Path, questions: str | Path | None = None) -> dict[str, int]:
    """Join correctness CSVs (shards of one run, or runs of different experts) into one, atomically.

    A question in several files keeps every known cell; the same cell known in two files must agree, and so must
    the question's category, else MergeConflictError names each disagreement (nothing is written). Rows follow
    `questions` (questions.jsonl: the order of an unsplit run) when given, else the order first seen; expert
    columns keep the order first seen. Returns counts (files, rows, duplicates: rows met in more than one file)."""
    experts: list[str] = []
    merged: dict[str, tuple[str, dict[str, str]]] = {}
    seen_in: dict[str, str] = {}
    conflicts: list[str] = []
    duplicates = 0
    for path in paths:
        file_experts, rows = read_correctness_csv(path)
        experts.extend(e for e in file_experts if e not in experts)
        for question_id, (category, cells) in rows.items():
            if question_id not in merged:
                merged[question_id], seen_in[question_id] = (category, dict(cells)), str(path)
                continue
            duplicates += 1
            known_category, known = merged[question_id]
            if category != known_category:
                conflicts.append(f"{question_id} category: {known_category!r} in {seen_in[question_id]}, "
                                 f"{category!r} in {path}")
            for expert, cell in cells.items():
                if cell == "":
                    continue
                if known.get(expert, "") not in ("", cell):
                    conflicts.append(f"{question_id} {expert}: {known[expert]} in {seen_in[question_id]}, "
                                     f"{cell} in {path}")
                else:
                    known[expert] = cell
    if conflicts:
        shown = "; ".join(conflicts[:10]) + (f"; and {len(conflicts) - 10} more" if len(conflicts) > 10 else "")
        raise MergeConflictError(f"{len(conflicts)} conflicting cell(s), nothing written: {shown}")
    order = list(merged)
    if questions is not None:
        position = {str(row.get("question_id")): i for i, (_, row) in enumerate(read_jsonl(questions))}
        order.sort(key=lambda q: position.get(q, len(position)))  # stable: questions not in the file keep their order
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question_id", "category", *experts])
        for question_id in order:
            category, cells = merged[question_id]
            writer.writerow([question_id, category, *(cells.get(e, "") for e in experts)])
    os.replace(temporary, out)
    return {"files": len(paths), "rows": len(order), "duplicates": duplicates}
