"""Run the configured experts over a labelled multiple-choice set and record who got what right (outcomes).

This is how a user builds a leaderboard for their own models (CoE-Ops eq. 4): every (question, expert) pair is
asked once, with a concurrency limit and retries, and each result is appended to a journal next to the output
(`OUT.journal.jsonl`) as soon as it is known. Killing the run loses at most the answers in flight; running it
again skips every pair already in the journal, so nothing is asked twice and nothing is lost. The correctness
CSV (`question_id,category,<expert>...` with 1/0) is rewritten atomically from the journal at the end.
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Iterable

from pydantic import BaseModel

from coe_router.jsonl import JsonlError, read_jsonl, require
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
    """Append-only record of finished (question, expert) pairs; a torn last line (a kill mid-write) is ignored."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.done: dict[tuple[str, str], int] = {}
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
