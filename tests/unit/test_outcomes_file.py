"""The wide outcomes file (`question_id,category,<model>...`): plain numbers parse in one block, empty cells read as
NaN, and a bad cell is refused naming file:line:column, whichever path parsed the file."""

from __future__ import annotations

import numpy as np
import pytest

from coe_router.outcomes import OutcomesFileError, read_outcomes


def _write(tmp_path, rows: list[str]):
    path = tmp_path / "correctness.csv"
    path.write_text("question_id,category,a,b,c\n" + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


def test_plain_numbers_and_empty_cells_read_as_scores_and_nan(tmp_path):
    plain = read_outcomes(_write(tmp_path, ["q1,math,1,0,0.5", "q2,law, 1 ,1,0"]))
    assert plain.scores.tolist() == [[1.0, 0.0, 0.5], [1.0, 1.0, 0.0]] and plain.ids == ["q1", "q2"]
    gaps = read_outcomes(_write(tmp_path, ["q1,math,1,,0.5", "q2,law,1,1,0", "q3,law,,0,"]))
    assert np.array_equal(gaps.scores, [[1, np.nan, 0.5], [1, 1, 0], [np.nan, 0, np.nan]], equal_nan=True)


@pytest.mark.parametrize("rows, message", [
    (["q1,math,1,0,1", "q2,law,1,high,0"], r"correctness.csv:3:4: column 'b': expected a number or empty, got 'high'"),
    (["q1,math,1,0,1", "q2,law,1,,1.5"], r"correctness.csv:3:5: column 'c': 1.5 is outside \[0, 1\]"),
    (["q1,math,-1,0,1"], r"correctness.csv:2:3: column 'a': -1.0 is outside \[0, 1\]"),
    (["q1,math,nan,0,1"], r"correctness.csv:2:3: column 'a': nan is outside \[0, 1\]"),
    (["q1,math,1,0"], r"correctness.csv:2: 4 fields, header has 5"),
])
def test_a_bad_cell_is_refused_naming_its_line_and_column(tmp_path, rows, message):
    with pytest.raises(OutcomesFileError, match=message):
        read_outcomes(_write(tmp_path, rows))
