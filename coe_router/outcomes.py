"""Recorded outcomes of a benchmark: which model got which question right, read from questions.jsonl + correctness.csv.

Two users: the live knn router (`router.kind: knn`), whose memory these outcomes are, and the evaluation toolkit
(leaderboards, replay). So the module sits beside both, and the runtime never imports `evaluation/`.

Everything the leaderboard and the replay evaluation compute is a function of one matrix `scores[question, model]`
(1/0, or a fractional score such as an F1; NaN where a model was not evaluated) plus the question texts and task
labels. Keeping that matrix in one typed value means no module re-parses files or re-joins ids on its own.

Recorded per-query costs (dollars per answer) travel beside it in the same wide shape: `costs.csv` next to
`correctness.csv` (`X.correctness.csv` -> `X.costs.csv`), read and written with it when present.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

from coe_router.jsonl import JsonlError, read_jsonl, require

MissingPolicy = Literal["drop", "zero"]
"""What a missing cell (model not evaluated on a question) means.

`drop`: keep only questions every model of the pool answered, so all models are compared on the same questions
(the default; it matches how MMLU-Pro figures over several models are usually reported).
`zero`: count the missing answer as wrong, as if the model had failed to answer.
"""


class OutcomesFileError(JsonlError):
    """A questions.jsonl / correctness.csv that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Outcomes:
    """Questions (rows) x models (columns) with their recorded scores.

    `scores` is float: 1/0 for correctness, fractions for graded metrics, NaN where the model was not evaluated.
    `questions` may be empty strings when only the correctness table was read (the leaderboard needs no text).
    `flags` holds optional per-question booleans (e.g. LLMRouter's `also_in_train`) that survive subsetting.
    `costs` (same shape as `scores`, dollars per answer) is set when the data recorded a cost per query.
    """

    ids: list[str]
    categories: np.ndarray
    questions: list[str]
    models: list[str]
    scores: np.ndarray
    options: list[list[str] | None] = field(default_factory=list)
    flags: dict[str, np.ndarray] = field(default_factory=dict)
    costs: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.scores.shape != (n, len(self.models)):
            raise ValueError(f"scores has shape {self.scores.shape}, expected {(n, len(self.models))}")
        if self.costs is not None and self.costs.shape != self.scores.shape:
            raise ValueError(f"costs has shape {self.costs.shape}, expected {self.scores.shape}")
        if len(self.categories) != n or len(self.questions) != n:
            raise ValueError("ids, categories and questions must have the same length")
        if self.options and len(self.options) != n:
            raise ValueError("options must be empty or one entry per question")

    @property
    def n(self) -> int:
        return len(self.ids)

    def extended(self, other: "Outcomes") -> "Outcomes":
        """These questions followed by `other`'s (e.g. served feedback), over the union of the models; a model a
        side lacks is a missing cell there. Costs and flags are dropped unless both sides carry them."""
        models = list(dict.fromkeys([*self.models, *other.models]))

        def widen(part: Outcomes) -> np.ndarray:
            wide = np.full((part.n, len(models)), np.nan)
            wide[:, [models.index(m) for m in part.models]] = part.scores
            return wide

        return Outcomes(ids=[*self.ids, *other.ids],
                        categories=np.concatenate([self.categories, other.categories]).astype(object),
                        questions=[*self.questions, *other.questions], models=models,
                        scores=np.vstack([widen(self), widen(other)]))

    @property
    def tasks(self) -> list[str]:
        """Task labels in first-seen order (stable across runs, unlike a set)."""
        return list(dict.fromkeys(self.categories.tolist()))

    def take(self, rows: np.ndarray | Sequence[int]) -> "Outcomes":
        """The questions at `rows` (indices or a boolean mask), in that order."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return replace(
            self,
            ids=[self.ids[i] for i in rows],
            categories=self.categories[rows],
            questions=[self.questions[i] for i in rows],
            scores=self.scores[rows],
            options=[self.options[i] for i in rows] if self.options else [],
            flags={name: values[rows] for name, values in self.flags.items()},
            costs=None if self.costs is None else self.costs[rows],
        )

    def select_models(self, names: Iterable[str]) -> "Outcomes":
        """Only the named models (in the given order); unknown names are an error, not silently dropped."""
        names = list(names)
        unknown = [name for name in names if name not in self.models]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; the outcomes have {self.models}")
        columns = [self.models.index(name) for name in names]
        costs = None if self.costs is None else self.costs[:, columns]
        return replace(self, models=names, scores=self.scores[:, columns], costs=costs)

    def complete_mask(self) -> np.ndarray:
        """Questions every model of the pool was evaluated on."""
        return ~np.isnan(self.scores).any(axis=1)

    def resolve_missing(self, policy: MissingPolicy = "drop") -> "Outcomes":
        """Apply the missing-cell policy (see MissingPolicy) so downstream math never meets a NaN."""
        if policy == "drop":
            return self.take(self.complete_mask())
        if policy == "zero":
            costs = None if self.costs is None else np.nan_to_num(self.costs, nan=0.0)
            return replace(self, scores=np.nan_to_num(self.scores, nan=0.0), costs=costs)
        raise ValueError(f"unknown missing policy {policy!r} (drop, zero)")


def _read_question_rows(path: Path) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for number, row in read_jsonl(path):
        require(row, ("question_id", "category", "question"), path, number, OutcomesFileError)
        rows[str(row["question_id"])] = row
    return rows


def _parse_cell(value: str, path: Path, number: int, column: int, name: str, upper: float | None = 1.0) -> float:
    """One cell of a wide file: empty -> NaN; else a number in [0, upper] (no upper bound for costs)."""
    value = value.strip()
    if value == "":
        return float("nan")
    try:
        score = float(value)
    except ValueError:
        raise OutcomesFileError(f"{path}:{number}:{column}: column {name!r}: expected a number or empty, "
                                f"got {value!r}") from None
    if not 0.0 <= score <= (upper if upper is not None else np.inf):
        bound = f"[0, {upper:g}]" if upper is not None else ">= 0"
        raise OutcomesFileError(f"{path}:{number}:{column}: column {name!r}: {score} is outside {bound}")
    return score


def _in_bounds(values: np.ndarray, upper: float | None) -> bool:
    return bool(((values >= 0.0) & (values <= (upper if upper is not None else np.inf))).all())  # NaN: False


def _parse_rows(cells: list[list[str]], path: Path, numbers: list[int], models: list[str],
                upper: float | None) -> np.ndarray:
    """The values of every row. numpy parses a file of plain numbers in one call (100,000 x 29 in 0.8 s, where
    one call per cell took 1.9 s of a restart); a file with empty cells (no outcome) goes row by row, and a row
    with an empty, foreign or out-of-bounds cell cell by cell, which reads empty as NaN and names a bad cell."""
    try:
        values = np.array(cells, dtype=float)
        if values.shape == (len(cells), len(models)) and _in_bounds(values, upper):
            return values
    except ValueError:
        pass
    rows = np.empty((len(cells), len(models)))
    for i, (row, number) in enumerate(zip(cells, numbers)):
        try:
            rows[i] = np.array(row, dtype=float)
            if _in_bounds(rows[i], upper):
                continue
        except ValueError:
            pass
        rows[i] = [_parse_cell(v, path, number, col, m, upper) for col, (v, m) in enumerate(zip(row, models), 3)]
    return rows


def _read_wide(path: Path, upper: float | None = 1.0) -> tuple[list[str], list[tuple[int, str, str, np.ndarray]]]:
    """`question_id,category,<model>...` -> models and (line, id, category, values) per row; errors name
    file:line:column (the column is the 1-based field number)."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise OutcomesFileError(f"{path}: empty file") from None
        if header[:2] != ["question_id", "category"] or len(header) < 3:
            raise OutcomesFileError(f"{path}:1: header must be question_id,category,<model>,... got {header[:3]}")
        models, numbers, keys, categories, cells = header[2:], [], [], [], []
        for number, record in enumerate(reader, start=2):
            if not record:
                continue
            if len(record) != len(header):
                raise OutcomesFileError(f"{path}:{number}: {len(record)} fields, header has {len(header)}")
            numbers.append(number)
            keys.append(record[0])
            categories.append(record[1])
            cells.append(record[2:])
    values = _parse_rows(cells, path, numbers, models, upper) if cells else np.zeros((0, len(models)))
    return models, list(zip(numbers, keys, categories, values))


def costs_path_for(outcomes_path: str | Path) -> Path:
    """Where the per-query costs of an outcomes file live: correctness -> costs in the name, else `.costs.csv`."""
    path = Path(outcomes_path)
    if "correctness" in path.name:
        return path.with_name(path.name.replace("correctness", "costs"))
    return path.with_name(f"{path.stem}.costs.csv")


def _read_costs(path: Path, models: list[str], ids: list[str]) -> np.ndarray:
    cost_models, rows = _read_wide(path, upper=None)
    if cost_models != models:
        raise OutcomesFileError(f"{path}:1: models {cost_models} differ from the outcomes' {models}")
    by_id = {key: values for _, key, _, values in rows}
    missing = [key for key in ids if key not in by_id]
    if missing:
        raise OutcomesFileError(f"{path}: no costs for question(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return np.array([by_id[key] for key in ids], dtype=float)


def read_outcomes(outcomes_path: str | Path, questions_path: str | Path | None = None) -> Outcomes:
    """Read correctness.csv (`question_id,category,<model>...`), joined with questions.jsonl when given, and the
    per-query costs next to it when that file exists (see costs_path_for).

    With questions, only ids present in both files are kept (a split's questions file may hold fewer rows), and
    a category that disagrees between the two files is an error: it would silently corrupt every per-task figure.
    """
    outcomes_path = Path(outcomes_path)
    questions = _read_question_rows(Path(questions_path)) if questions_path is not None else None
    models, records = _read_wide(outcomes_path)
    ids, categories, texts, options, rows = [], [], [], [], []
    for number, key, category, values in records:
        text, choices = "", None
        if questions is not None:
            question = questions.get(key)
            if question is None:
                continue
            if str(question["category"]) != category:
                raise OutcomesFileError(
                    f"{outcomes_path}:{number}:2: question {key} is {category!r} here but "
                    f"{question['category']!r} in {questions_path}"
                )
            text, choices = str(question["question"]), question.get("options")
        ids.append(key)
        categories.append(category)
        texts.append(text)
        options.append(list(choices) if choices else None)
        rows.append(values)
    if not ids:
        where = f" that also appear in {questions_path}" if questions is not None else ""
        raise OutcomesFileError(f"{outcomes_path}: no outcome rows{where}")
    costs_path = costs_path_for(outcomes_path)
    return Outcomes(
        ids=ids,
        categories=np.array(categories, dtype=object),
        questions=texts,
        models=models,
        scores=np.array(rows, dtype=float),
        options=options if questions is not None else [],
        costs=_read_costs(costs_path, models, ids) if costs_path.exists() else None,
    )


def read_questions(path: str | Path) -> Outcomes:
    """Labelled questions alone (no outcomes: zero model columns), for classifier evaluation."""
    rows = _read_question_rows(Path(path))
    if not rows:
        raise OutcomesFileError(f"{path}: no questions")
    return Outcomes(
        ids=list(rows),
        categories=np.array([str(r["category"]) for r in rows.values()], dtype=object),
        questions=[str(r["question"]) for r in rows.values()],
        models=[],
        scores=np.zeros((len(rows), 0)),
        options=[list(r["options"]) if r.get("options") else None for r in rows.values()],
    )


def write_outcomes(outcomes: Outcomes, questions_path: str | Path, outcomes_path: str | Path) -> None:
    """Write the pair of files `read_outcomes` reads (used by the split and the imports), and the costs file
    next to the outcomes when the outcomes carry per-query costs."""
    questions_path, outcomes_path = Path(questions_path), Path(outcomes_path)
    questions_path.parent.mkdir(parents=True, exist_ok=True)
    outcomes_path.parent.mkdir(parents=True, exist_ok=True)
    with questions_path.open("w", encoding="utf-8") as out:
        for i, key in enumerate(outcomes.ids):
            row: dict = {"question_id": key, "category": str(outcomes.categories[i]), "question": outcomes.questions[i]}
            if outcomes.options and outcomes.options[i]:
                row["options"] = outcomes.options[i]
            for name, values in outcomes.flags.items():
                row[name] = bool(values[i])
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    _write_wide(outcomes, outcomes.scores, outcomes_path)
    if outcomes.costs is not None:
        _write_wide(outcomes, outcomes.costs, costs_path_for(outcomes_path))


def _write_wide(outcomes: Outcomes, matrix: np.ndarray, path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["question_id", "category", *outcomes.models])
        for i, key in enumerate(outcomes.ids):
            writer.writerow([key, outcomes.categories[i], *(_format_score(v) for v in matrix[i])])


def _format_score(value: float) -> str:
    if np.isnan(value):
        return ""
    return str(int(value)) if value in (0.0, 1.0) else f"{value:.6g}"


def read_prices(path: str | Path, models: Iterable[str] | None = None) -> dict[str, float]:
    """Model -> price per 1M tokens (see coe_router.evaluation.prices for the accepted files)."""
    from coe_router.evaluation.prices import read_prices as read

    return read(path, models)


def read_llmrouter_scores(path: str | Path) -> dict[str, Outcomes]:
    """LLMRouter's scores_with_task.jsonl as one Outcomes per split (`train`, `test`), tasks from `task_name`.

    Ids are `<split>-<line>` since the data has none; `also_in_train` becomes a flag so a report can show the
    figures with and without the test queries that were also seen in training. Rows that carry LLMRouter's
    per-query `costs` ({model: dollars}) give Outcomes.costs (when every row has them).
    """
    path = Path(path)
    by_split: dict[str, list[dict]] = {}
    for number, row in read_jsonl(path):
        require(row, ("split", "query", "task_name", "scores"), path, number, OutcomesFileError)
        row["_line"] = number
        by_split.setdefault(row["split"], []).append(row)
    if not by_split:
        raise OutcomesFileError(f"{path}: no rows")
    models = sorted(next(iter(by_split.values()))[0]["scores"])
    result = {}
    for split, rows in by_split.items():
        result[split] = Outcomes(
            ids=[f"{split}-{row['_line']}" for row in rows],
            categories=np.array([row["task_name"] for row in rows], dtype=object),
            questions=[row["query"] for row in rows],
            models=models,
            scores=np.array([[float(row["scores"].get(m, np.nan)) for m in models] for row in rows], dtype=float),
            options=[row.get("choices") if isinstance(row.get("choices"), list) else None for row in rows],
            flags={"also_in_train": np.array([bool(row.get("also_in_train")) for row in rows])},
            costs=_llmrouter_costs(rows, models),
        )
    return result


def _llmrouter_costs(rows: list[dict], models: list[str]) -> np.ndarray | None:
    if not all(isinstance(row.get("costs"), dict) for row in rows):
        return None
    return np.array([[float(row["costs"].get(m, np.nan)) for m in models] for row in rows], dtype=float)
