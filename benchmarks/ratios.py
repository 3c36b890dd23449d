"""How a benchmark hands its ratios to ``benchmarks/run_all.py``.

A benchmark prints its own report for people; next to it, each ratio it measures goes through
:func:`record`, which appends one JSON line to the file named by ``SDEVAL_BENCH_RATIOS``. Unset
(a benchmark run by hand), nothing is written, so the report stays the only output.
"""

from __future__ import annotations

import json
import math
import os
import re

ENV = "SDEVAL_BENCH_RATIOS"
#: a goal is a comparison with a number: ">= 0.9", "<= 0.02", "> 1"
GOAL = re.compile(r"^\s*(>=|<=|>|<)\s*([0-9.eE+-]+)\s*$")


def record(compared: str, ratio: float, goal: str | None = None) -> None:
    """One measured ratio: what is compared (``A / B`` and the unit), its value, the goal if the
    benchmark states one (``">= 0.9"``)."""
    if goal is not None and not GOAL.match(goal):
        raise ValueError(f"goal {goal!r} is not a comparison such as '>= 0.9'")
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"compared": compared, "ratio": float(ratio) if math.isfinite(ratio) else None,
                       "goal": goal})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def goal_met(ratio: float | None, goal: str | None) -> bool | None:
    """Whether ``ratio`` meets ``goal``; None when there is no goal or no value."""
    if goal is None or ratio is None:
        return None
    match = GOAL.match(goal)
    if match is None:
        raise ValueError(f"goal {goal!r} is not a comparison such as '>= 0.9'")
    op, bound = match.group(1), float(match.group(2))
    return {">=": ratio >= bound, "<=": ratio <= bound, ">": ratio > bound, "<": ratio < bound}[op]
