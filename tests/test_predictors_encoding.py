"""The task-latency predictor's features encode every op kind a plan can give a task.

``cosearch.compile.plan.OP_KINDS`` is the one vocabulary the plan classifies tasks into;
the predictor one-hot encodes a task's kind over it. A kind missing from the encoding
gets an all-zero one-hot, so its tasks look like no kind at all to the model (the
predictor once kept its own list without ``"layout"``: every layout task was encoded so).
"""

from __future__ import annotations

import numpy as np

from cosearch.compile.plan import OP_KINDS
from cosearch.search.evaluator import Task
from cosearch.search.predictors import TaskLatencyPredictor


def _kind_columns() -> tuple[np.ndarray, list[int]]:
    """Features of one task per op kind, alike in everything but the kind; and the columns
    that differ between them (the op-kind encoding)."""
    rows = np.array([TaskLatencyPredictor.features(Task(f"w-{k}", 1, k, 2e6, ((1, 16, 8, 8),), k), 8)
                     for k in OP_KINDS])
    cols = [j for j in range(rows.shape[1]) if len(set(rows[:, j])) > 1]
    return rows, cols


def test_every_op_kind_has_its_own_one_hot():
    rows, cols = _kind_columns()
    assert "layout" in OP_KINDS
    onehot = rows[:, cols]
    for kind, code in zip(OP_KINDS, onehot):
        assert set(code) <= {0.0, 1.0} and code.sum() == 1.0, f"op kind {kind!r} encoded as {code}"
    assert len({code.tobytes() for code in onehot}) == len(OP_KINDS)  # distinct kinds, distinct codes


def test_layout_tasks_differ_from_other_kinds_only_in_the_kind():
    rows, cols = _kind_columns()
    layout = rows[OP_KINDS.index("layout")]
    assert layout[cols].any()  # not the all-zero encoding of an unknown kind
    rest = [j for j in range(rows.shape[1]) if j not in cols]
    assert rest and all(np.array_equal(r[rest], layout[rest]) for r in rows)
