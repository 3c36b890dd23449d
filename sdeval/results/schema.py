"""The columns of a results table and the verdict vocabulary every summary and report uses."""

from __future__ import annotations

from typing import Sequence

from sdeval.pipeline.rows import ID_COLUMNS, META_COLUMNS

#: image verdicts, mildest first; ``error``: the image could not be evaluated
VERDICTS = ("pass", "reseed", "reprompt", "restore_face", "block", "error")
#: how bad a verdict is (DESIGN.md, gate policy: block > restore_face > reprompt > reseed > pass)
SEVERITY = {v: i for i, v in enumerate(VERDICTS)}

GATE_TAIL_COLUMNS = ("group", "duplicate_of", "verdict", "reasons", "notes", "missing", "warnings", "error")
EVAL_TAIL_COLUMNS = ("group", "duplicate_of", "missing", "warnings", "error")


def gate_columns(metric_names: Sequence[str]) -> tuple[str, ...]:
    return ID_COLUMNS + META_COLUMNS + tuple(metric_names) + GATE_TAIL_COLUMNS


def eval_columns(metric_names: Sequence[str]) -> tuple[str, ...]:
    return ID_COLUMNS + META_COLUMNS + tuple(metric_names) + EVAL_TAIL_COLUMNS
