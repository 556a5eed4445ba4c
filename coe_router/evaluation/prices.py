"""Model prices and per-query costs for quality/cost evaluation.

A price file gives each model's price per 1M tokens, either one number or separate input and output prices:

- JSON: `{model: 0.2}`, `{model: {"input": 0.15, "output": 0.6}}`, LLMRouter's `{model: {"input_price": ..,
  "output_price": ..}}` or `{model: {"price_per_1m_tokens": ..}}`;
- CSV: a `model` column with `price`, or with `input` and `output` (also `input_price` / `output_price`).

Entries for models outside the evaluated pool are ignored (a shared price list may name many more models); a
model of the pool without a price is an error. Errors name the file, the line and the column.

How a price becomes a cost per query (`routing_prices`):
- with a tokens-per-query assumption (IN,OUT tokens): `(IN x input + OUT x output) / 1e6` dollars per query;
- without one: the mean of input and output price, in dollars per 1M tokens (every answer weighs the same).
Per-query costs recorded with the outcomes (costs.csv, from the long format's `cost` or token columns) always win
over prices when the routers are scored; the routers themselves route with one price per model (they cannot know a
query's cost before it runs): the price list, else each model's mean recorded cost on train.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coe_router.outcomes import Outcomes, OutcomesFileError

PER_1M = "$ / 1M tokens"
PER_QUERY = "$ / query"


@dataclass(frozen=True)
class TokenPrice:
    """Dollars per 1M input and output tokens."""

    input: float
    output: float

    @property
    def mean(self) -> float:
        return (self.input + self.output) / 2

    def per_query(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1e6


def _position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first `needle` in `text` (1, 1 when absent)."""
    at = text.find(needle)
    if at < 0:
        return 1, 1
    line = text.count("\n", 0, at) + 1
    return line, at - (text.rfind("\n", 0, at) + 1) + 1


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number >= 0 and np.isfinite(number) else None


def _json_entry(value: object) -> tuple[float, float] | str:
    """(input, output) of one JSON entry, or the reason it is not a price."""
    if not isinstance(value, dict):
        number = _number(value)
        return (number, number) if number is not None else "expected a price >= 0"
    if "price_per_1m_tokens" in value:
        number = _number(value["price_per_1m_tokens"])
        return (number, number) if number is not None else "price_per_1m_tokens must be a number >= 0"
    for names in (("input", "output"), ("input_price", "output_price")):
        if names[0] in value or names[1] in value:
            pair = [_number(value.get(name)) for name in names]
            if None in pair:
                return f"{names[0]} and {names[1]} must both be numbers >= 0"
            return pair[0], pair[1]
    return "expected a number, {input, output}, {input_price, output_price} or {price_per_1m_tokens}"


def _read_json(path: Path, text: str, wanted: set[str] | None) -> dict[str, TokenPrice]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutcomesFileError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise OutcomesFileError(f"{path}:1:1: expected a JSON object of model -> price")
    prices = {}
    for model, value in data.items():
        if wanted is not None and model not in wanted:
            continue
        entry = _json_entry(value)
        if isinstance(entry, str):
            line, column = _position(text, json.dumps(model))
            raise OutcomesFileError(f"{path}:{line}:{column}: model {model!r}: {entry}")
        prices[model] = TokenPrice(*entry)
    return prices


def _read_csv(path: Path, text: str, wanted: set[str] | None) -> dict[str, TokenPrice]:
    rows = csv.reader(text.splitlines())
    header = [name.strip().lower() for name in next(rows, [])]
    pick = lambda *names: next((header.index(n) for n in names if n in header), None)
    model_col = pick("model")
    single = pick("price", "price_per_1m_tokens", "usd_per_1m")
    pair = (pick("input", "input_price"), pick("output", "output_price"))
    if model_col is None or (single is None and None in pair):
        raise OutcomesFileError(f"{path}:1: a prices CSV needs `model` and `price`, or `model`, `input` and "
                                f"`output` columns; got {header}")
    columns = (single, single) if None in pair else pair
    prices = {}
    for number, record in enumerate(rows, start=2):
        if not record or record[model_col] == "" or (wanted is not None and record[model_col] not in wanted):
            continue
        values = []
        for col in columns:
            value = _number(record[col]) if col < len(record) else None
            if value is None:
                raise OutcomesFileError(f"{path}:{number}: column {col + 1} ({header[col]}): expected a price >= 0, "
                                        f"got {record[col] if col < len(record) else ''!r}")
            values.append(value)
        prices[record[model_col]] = TokenPrice(*values)
    return prices


def read_price_list(path: str | Path, models: Iterable[str] | None = None) -> dict[str, TokenPrice]:
    """Input and output price per 1M tokens of each model; with `models`, only those (others are ignored,
    even malformed ones) and each of them must have a price."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    wanted = set(models) if models is not None else None
    reader = _read_csv if path.suffix.lower() == ".csv" else _read_json
    prices = reader(path, text, wanted)
    if wanted is not None:
        missing = sorted(wanted - set(prices))
        if missing:
            raise OutcomesFileError(f"{path}: no price for model(s) {missing}")
    return prices


def read_prices(path: str | Path, models: Iterable[str] | None = None) -> dict[str, float]:
    """Model -> price per 1M tokens (the mean of input and output price when they differ)."""
    return {model: price.mean for model, price in read_price_list(path, models).items()}


def parse_tokens(spec: str | None) -> tuple[float, float] | None:
    """`IN,OUT` (or one number for both) tokens per query -> (IN, OUT)."""
    if not spec:
        return None
    parts = [p.strip() for p in spec.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"tokens per query must be IN,OUT numbers, got {spec!r}") from None
    if len(values) not in (1, 2) or min(values) < 0:
        raise ValueError(f"tokens per query must be IN,OUT numbers >= 0, got {spec!r}")
    return (values[0], values[-1])


def routing_prices(price_list: dict[str, TokenPrice] | None, models: Sequence[str],
                   tokens: tuple[float, float] | None = None, train: Outcomes | None = None
                   ) -> tuple[dict[str, float] | None, str | None]:
    """One price per model for routing (and for scoring when no per-query cost is recorded), with its unit."""
    if price_list:
        if tokens is not None:
            return {m: price_list[m].per_query(*tokens) for m in models}, PER_QUERY
        return {m: price_list[m].mean for m in models}, PER_1M
    if train is not None and train.costs is not None:
        means = np.nanmean(train.costs, axis=0)
        return {m: float(v) for m, v in zip(train.models, means)}, PER_QUERY
    return None, None


def cost_matrix(outcomes: Outcomes, prices: dict[str, float] | None) -> np.ndarray | None:
    """(questions, models) cost of each answer: the recorded per-query costs, else the model's price."""
    if outcomes.costs is not None:
        return outcomes.costs
    if not prices:
        return None
    return np.broadcast_to(np.array([prices[m] for m in outcomes.models], dtype=float), outcomes.scores.shape)
