"""A gate run's result (rows, verdicts, summary) and how it is rewritten after regeneration."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from sdeval.gates.engine import BatchVerdict, judge_batch
from sdeval.gates.policy import Policy
from sdeval.pipeline.rows import SCHEMA_VERSION
from sdeval.results.summary import verdict_summary

if TYPE_CHECKING:  # pandas is imported lazily: `sdeval --help` stays fast
    import pandas as pd


@dataclass(frozen=True)
class GateResult:
    rows: list[dict[str, Any]]
    batch: BatchVerdict
    policy: Policy
    summary: dict[str, Any]
    columns: tuple[str, ...]
    out_dir: Path | None = None

    @property
    def passed(self) -> bool:
        return self.batch.passed

    @property
    def table(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(self.columns))


def write_result_folder(result: GateResult, out_dir: Path) -> GateResult:
    """results.jsonl, results.csv and summary.json, each written atomically."""
    from sdeval.results.files import write_result_files

    summary = write_result_files(out_dir, result.rows, result.columns, result.summary, SCHEMA_VERSION)
    return replace(result, out_dir=out_dir, summary=summary)


def with_rows(result: GateResult, rows: list[dict[str, Any]], *, batch: BatchVerdict | None = None,
              extra_columns: Sequence[str] = (), summary_updates: dict[str, Any] | None = None) -> GateResult:
    """``result`` with new rows (after regeneration or quarantine): the batch verdict and the
    row-derived parts of the summary (counts, reasons, worst images, metric stats) recomputed."""
    batch = batch or judge_batch((r["verdict"] for r in rows), result.policy)
    columns = result.columns + tuple(c for c in extra_columns if c not in result.columns)
    summary = {**result.summary, "passed": batch.passed, "verdict": batch.as_dict(),
               **verdict_summary(rows, batch.counts, list(result.summary.get("metrics", {}))),
               **(summary_updates or {})}
    return replace(result, rows=rows, batch=batch, summary=summary, columns=columns)
