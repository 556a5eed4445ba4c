"""`coe leaderboard run`: outcomes of every expert on labelled questions, resumable after a kill."""

import csv
import json
import re

import pytest

from coe_router.config import ExpertSpec
from coe_router.evaluation.runner import Journal, read_mc_questions, run_outcomes
from coe_router.routing.pool import ExpertPool
from coe_router.routing.task_map import TaskMap
from tests.fakes import ScriptedChat


def questions_file(tmp_path, n=6):
    path = tmp_path / "q.jsonl"
    with path.open("w") as out:
        for i in range(n):
            out.write(json.dumps({"question_id": i, "category": "math" if i % 2 else "law",
                                  "question": f"question {i}", "options": ["w", "x", "y", "z"], "answer": "B"}) + "\n")
    return path


class Counting(ScriptedChat):
    calls: list = []
    crash_after: int | None = None
    flaky: int = 0

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if self.flaky > 0:
            self.flaky -= 1
            raise ConnectionError("flaky")
        if self.crash_after is not None and len(self.calls) >= self.crash_after:
            raise KeyboardInterrupt  # a kill in the middle of the run
        self.calls.append(messages[-1].content)
        return super()._generate(messages, stop, run_manager, **kwargs)


def pool_of(**models):
    experts = {name: ExpertSpec(model=name) for name in models}
    return ExpertPool(experts, models, TaskMap(ranking={}, default_expert=next(iter(models))))


def read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_outcomes_csv_has_one_cell_per_question_and_expert(tmp_path):
    good = Counting(reply=lambda p: "the answer is (B)", seen=[], calls=[])
    bad = Counting(reply=lambda p: "the answer is (C)", seen=[], calls=[])
    out = tmp_path / "outcomes.csv"
    counts = run_outcomes(pool_of(good=good, bad=bad), read_mc_questions(questions_file(tmp_path)), out,
                          progress=False)
    rows = read_csv(out)
    assert counts == {"asked": 12, "skipped": 0, "failed": 0}
    assert [r["question_id"] for r in rows] == [str(i) for i in range(6)]
    assert all(r["good"] == "1" and r["bad"] == "0" for r in rows)


def test_killed_run_resumes_without_duplicates_or_losses(tmp_path):
    questions = read_mc_questions(questions_file(tmp_path))
    out = tmp_path / "outcomes.csv"
    calls: list = []
    crashing = Counting(reply=lambda p: "the answer is (B)", seen=[], calls=calls, crash_after=4)
    with pytest.raises(KeyboardInterrupt):
        run_outcomes(pool_of(m=crashing), questions, out, concurrency=1, progress=False)
    assert len(Journal(out.with_name("outcomes.csv.journal.jsonl")).done) == 4
    resumed = Counting(reply=lambda p: "the answer is (B)", seen=[], calls=calls)
    counts = run_outcomes(pool_of(m=resumed), questions, out, concurrency=1, progress=False)
    assert counts["skipped"] == 4 and counts["asked"] == 2
    calls = crashing.calls + resumed.calls
    asked = sorted(int(re.search(r"The question is: question (\d+)", c).group(1)) for c in calls)
    assert asked == list(range(6))                                   # each question asked exactly once overall
    assert [r["m"] for r in read_csv(out)] == ["1"] * 6


def test_retries_then_empty_cell_for_persistent_failures(tmp_path):
    questions = read_mc_questions(questions_file(tmp_path, n=2))
    flaky = Counting(reply=lambda p: "the answer is (B)", seen=[], calls=[], flaky=1)
    down = Counting(reply=lambda p: "x", seen=[], calls=[], flaky=10**6)
    out = tmp_path / "o.csv"
    counts = run_outcomes(pool_of(flaky=flaky, down=down), questions, out, retries=1, backoff_s=0, progress=False)
    assert counts["failed"] == 2 and counts["asked"] == 2
    assert [(r["flaky"], r["down"]) for r in read_csv(out)] == [("1", ""), ("1", "")]


def test_empty_answer_is_recorded_as_wrong_not_as_a_failure(tmp_path):
    questions = read_mc_questions(questions_file(tmp_path, n=2))
    silent = Counting(reply=lambda p: "", seen=[], calls=[])
    out = tmp_path / "o.csv"
    counts = run_outcomes(pool_of(silent=silent), questions, out, retries=3, backoff_s=0, progress=False)
    assert counts == {"asked": 2, "skipped": 0, "failed": 0}
    assert len(silent.calls) == 2                                    # not retried: an empty answer is an answer
    assert [r["silent"] for r in read_csv(out)] == ["0", "0"]


def test_torn_journal_line_is_ignored(tmp_path):
    journal = tmp_path / "j.jsonl"
    journal.write_text('{"question_id": "1", "expert": "a", "correct": 1}\n{"question_id": "2", "exp')
    assert Journal(journal).done == {("1", "a"): 1}


def test_a_resume_after_a_torn_line_appends_a_readable_record_and_asks_the_torn_pair_again(tmp_path):
    from coe_router.jsonl import read_jsonl

    journal = tmp_path / "j.jsonl"
    journal.write_text('{"question_id": "1", "expert": "a", "correct": 1}\n{"question_id": "10523", "expe')
    resumed = Journal(journal)
    assert ("10523", "a") not in resumed.done
    resumed.record("10523", "a", 0, "B")
    rows = [row for _, row in read_jsonl(journal)]  # strict: every line parses
    assert [(r["question_id"], r["correct"]) for r in rows] == [("1", 1), ("10523", 0)]
    assert Journal(journal).done == {("1", "a"): 1, ("10523", "a"): 0}


def test_questions_without_options_are_rejected(tmp_path):
    path = tmp_path / "open.jsonl"
    path.write_text(json.dumps({"question_id": 1, "category": "x", "question": "why?"}) + "\n")
    with pytest.raises(ValueError, match="options"):
        read_mc_questions(path)
