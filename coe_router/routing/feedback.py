"""Learning from served traffic: a score on a served answer becomes a recorded outcome of that expert on that
query, used at once by the query-level router (a new memory row) and the task map (the expert's accuracy on the
task), with nothing retrained. Feedback is appended to a journal in the long outcomes format, so
`coe leaderboard build` can include it.

A score is accepted only for an answer this process served (its completion id), so nobody can feed the router
outcomes for answers it never gave.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from coe_router.defaults import UNKNOWN_TASK
from coe_router.jsonl import repair_torn_tail


class FeedbackError(ValueError):
    """Feedback the router refuses: an unknown completion id, or a score outside [0, 1]."""


@dataclass(frozen=True)
class ServedAnswer:
    query: str
    task: str
    expert: str


class FeedbackRecorder:
    """Remembers the last `remember` served answers by completion id and turns scores on them into outcomes.

    One score per served answer: a repeat replaces the earlier one (in the task map and the knn memory alike), so
    one completion moves the router by at most one observation however often it is posted."""

    def __init__(self, graph, journal: str | Path | None = None, remember: int = 10_000):
        self.pool = graph.pool
        self.query_router = getattr(graph, "query_router", None)
        self.journal = Path(journal).expanduser() if journal else None
        if self.journal is not None:
            repair_torn_tail(self.journal)  # a crash mid-append: the next record must not be glued onto it
        self.remember = remember
        self._served: OrderedDict[str, ServedAnswer] = OrderedDict()
        self._scored: dict[str, tuple[float, int | None]] = {}  # completion id -> (its score, its knn memory row)
        self._lock = threading.Lock()

    def served(self, completion_id: str, query: str, task: str, expert: str) -> None:
        with self._lock:
            self._served[completion_id] = ServedAnswer(query, task, expert)
            while len(self._served) > self.remember:
                gone, _ = self._served.popitem(last=False)
                self._scored.pop(gone, None)

    def record(self, completion_id: str, score: float) -> ServedAnswer:
        """Apply a score (1 = right, 0 = wrong, graded in between) to a served answer; returns what it scored."""
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0.0 <= float(score) <= 1.0:
            raise FeedbackError(f"score must be a number in [0, 1], got {score!r}")
        with self._lock:
            answer = self._served.get(completion_id)
            if answer is None:
                raise FeedbackError(f"no served answer with id {completion_id!r} (unknown, or older than the last "
                                    f"{self.remember} answers)")
            earlier, row = self._scored.get(completion_id, (None, None))
            if answer.task != UNKNOWN_TASK:
                self.pool.record_outcome(answer.task, answer.expert, float(score), replaces=earlier)
            if self.query_router is not None and (earlier is None or row is not None):
                row = self.query_router.record(answer.query, answer.expert, float(score), answer.task, replaces=row)
            self._scored[completion_id] = (float(score), row)
        self._append(completion_id, answer, float(score))
        return answer

    def _append(self, completion_id: str, answer: ServedAnswer, score: float) -> None:
        if self.journal is None:
            return
        row = {"question_id": completion_id, "category": answer.task, "question": answer.query,
               "model": answer.expert, "score": score, "source": "feedback"}
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.journal.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
