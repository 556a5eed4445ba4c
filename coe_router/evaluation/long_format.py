"""The long outcomes format: one row per (question, model), as most evaluation harnesses log their results.

Columns (CSV with a header, or JSONL objects with the same field names):

    question_id, category, question, model, score      required
    cost                                               optional: dollars this answer cost
    input_tokens, output_tokens                        optional: tokens this answer used (priced with a price list)

`score` may be graded on any range, declared once for the file (`--score-range MIN,MAX`, default 0,1): it is
rescaled to [0, 1] as (score - MIN) / (MAX - MIN). A score outside the range is an error unless `clip` is asked
for, which clamps it to the range first. A question's category and text must be the same on each of its rows; a
(question, model) pair may appear once. A model with no row for a question is a missing cell (see MissingPolicy).

Costs: a row's `cost` when given, else its tokens priced with the price list ((input_tokens x input price +
output_tokens x output price) / 1e6; an absent token column counts 0). When the file has any cost or token column,
every row must have a cost one way or the other. Errors name file:line:column: the column is the 1-based field
number in a CSV, the character position of the field's key in a JSONL line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coe_router.outcomes import Outcomes, OutcomesFileError
from coe_router.evaluation.prices import TokenPrice
from coe_router.jsonl import read_jsonl, require

REQUIRED = ("question_id", "category", "question", "model", "score")
COST_FIELDS = ("cost", "input_tokens", "output_tokens")


@dataclass(frozen=True)
class ScoreRange:
    """The declared range of the file's scores; `clip` clamps out-of-range scores instead of failing."""

    low: float = 0.0
    high: float = 1.0
    clip: bool = False

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError(f"score range must be MIN,MAX with MIN < MAX, got {self.low:g},{self.high:g}")

    @classmethod
    def parse(cls, spec: str | None, clip: bool = False) -> ScoreRange:
        if not spec:
            return cls(clip=clip)
        try:
            low, high = (float(part) for part in spec.split(","))
        except ValueError:
            raise ValueError(f"score range must be MIN,MAX (two numbers), got {spec!r}") from None
        return cls(low, high, clip)

    def rescale(self, score: float) -> float | None:
        """Score in [0, 1], or None when it is out of range and not clipped."""
        if not self.low <= score <= self.high:
            if not self.clip:
                return None
            score = min(max(score, self.low), self.high)
        return (score - self.low) / (self.high - self.low)


Cells = dict[str, tuple[object, int]]
"""field -> (raw value, column) of one row."""


def _csv_rows(path: Path) -> Iterator[tuple[int, Cells]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise OutcomesFileError(f"{path}:1: missing column(s) {missing}; the header is {header}")
        start = reader.line_num + 1
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record or not any(cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                raise OutcomesFileError(f"{path}:{line}: {len(record)} fields, the header has {len(header)}")
            yield line, {name: (record[col], col + 1) for col, name in enumerate(header)}


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Cells]]:
    with path.open(encoding="utf-8") as handle:
        texts = handle.readlines()
    for line, row in read_jsonl(path):
        require(row, REQUIRED, path, line, OutcomesFileError)
        yield line, {name: (value, texts[line - 1].find(json.dumps(name)) + 1) for name, value in row.items()}


class _LongReader:
    """Accumulates rows into the wide matrices, checking each row as it comes."""

    def __init__(self, path: Path, scores: ScoreRange, prices: dict[str, TokenPrice] | None):
        self.path, self.range, self.prices = path, scores, prices or {}
        self.questions: dict[str, tuple[str, str]] = {}
        self.models: dict[str, int] = {}
        self.cells: dict[tuple[str, str], tuple[float, float]] = {}
        self.has_costs = False
        self.without_cost: int | None = None  # first line with no cost field (an error once any row has one)

    def fail(self, line: int, cells: Cells, name: str, message: str) -> OutcomesFileError:
        column = cells[name][1] if name in cells else 1
        return OutcomesFileError(f"{self.path}:{line}:{column}: column {name!r}: {message}")

    def number(self, line: int, cells: Cells, name: str) -> float | None:
        value = cells.get(name, ("", 0))[0]
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            number = float(value) if not isinstance(value, bool) else float("nan")
        except (TypeError, ValueError):
            number = float("nan")
        if not np.isfinite(number):
            raise self.fail(line, cells, name, f"expected a number, got {value!r}")
        return number

    def text(self, line: int, cells: Cells, name: str, allow_empty: bool = False) -> str:
        value = cells[name][0]
        if not isinstance(value, (str, int)) or isinstance(value, bool) or (not allow_empty and str(value).strip() == ""):
            raise self.fail(line, cells, name, f"expected a non-empty text, got {value!r}")
        return str(value)

    def add(self, line: int, cells: Cells) -> None:
        key, model = self.text(line, cells, "question_id"), self.text(line, cells, "model")
        category, question = self.text(line, cells, "category"), self.text(line, cells, "question", allow_empty=True)
        known = self.questions.setdefault(key, (category, question))
        if known[0] != category:
            raise self.fail(line, cells, "category", f"question {key} is {category!r} here, {known[0]!r} before")
        if known[1] != question:
            raise self.fail(line, cells, "question", f"question {key} has another text than on its first row")
        if (key, model) in self.cells:
            raise self.fail(line, cells, "model", f"a second row for question {key} and model {model!r}")
        raw = self.number(line, cells, "score")
        if raw is None:
            raise self.fail(line, cells, "score", "empty score")
        score = self.range.rescale(raw)
        if score is None:
            raise self.fail(line, cells, "score", f"{raw:g} is outside the declared range "
                            f"[{self.range.low:g}, {self.range.high:g}] (declare the range, or clip)")
        self.models.setdefault(model, len(self.models))
        self.cells[key, model] = (score, self.cost(line, cells, model))

    def cost(self, line: int, cells: Cells, model: str) -> float:
        present = [name for name in COST_FIELDS if name in cells]
        if not present:
            self.without_cost = self.without_cost or line
            return float("nan")
        self.has_costs = True
        cost = self.number(line, cells, "cost")
        tokens = [self.number(line, cells, name) for name in ("input_tokens", "output_tokens")]
        if cost is None and any(t is not None for t in tokens):
            if model not in self.prices:
                raise self.fail(line, cells, "model", f"tokens given but no input/output price for {model!r} "
                                "(pass a price list)")
            cost = self.prices[model].per_query(*(t or 0.0 for t in tokens))
        if cost is None:
            raise self.fail(line, cells, present[0], "no cost: give `cost`, or `input_tokens`/`output_tokens` "
                            "with a price list")
        if cost < 0:
            raise self.fail(line, cells, present[0], f"negative cost {cost:g}")
        return cost

    def outcomes(self) -> Outcomes:
        if not self.cells:
            raise OutcomesFileError(f"{self.path}: no rows")
        if self.has_costs and self.without_cost is not None:
            raise OutcomesFileError(f"{self.path}:{self.without_cost}:1: no `cost` or token field on this row, "
                                    "while other rows have them")
        ids, models = list(self.questions), list(self.models)
        row = {key: i for i, key in enumerate(ids)}
        scores = np.full((len(ids), len(models)), np.nan)
        costs = np.full_like(scores, np.nan)
        for (key, model), (score, cost) in self.cells.items():
            scores[row[key], self.models[model]] = score
            costs[row[key], self.models[model]] = cost
        return Outcomes(ids=ids, categories=np.array([self.questions[k][0] for k in ids], dtype=object),
                        questions=[self.questions[k][1] for k in ids], models=models, scores=scores,
                        costs=costs if self.has_costs else None)


def read_long(path: str | Path, scores: ScoreRange | None = None,
              prices: dict[str, TokenPrice] | None = None) -> Outcomes:
    """A long CSV or JSONL file (by extension: .jsonl/.json is JSONL, anything else CSV) as wide Outcomes."""
    path = Path(path)
    reader = _LongReader(path, scores or ScoreRange(), prices)
    rows = _jsonl_rows(path) if path.suffix.lower() in (".jsonl", ".json") else _csv_rows(path)
    for line, cells in rows:
        reader.add(line, cells)
    return reader.outcomes()
