"""The library API the CLI is a face for: ``evaluate`` returns a table, ``gate`` returns verdicts."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from sdeval.gates.engine import VERDICTS, BatchVerdict, judge_batch, judge_image
from sdeval.gates.policy import Policy
from sdeval.inputs.discovery import Discovery, discover
from sdeval.pipeline import (META_COLUMNS, SCHEMA_VERSION, ProgressFn, RunOptions, RunStats, build_metrics,
                             extractors_of, iter_rows, protocol_of)

if TYPE_CHECKING:  # pandas is imported lazily: `sdeval --help` stays fast
    import pandas as pd

ID_COLUMNS = ("path", "sha256", "size_bytes", "format", "mode", "width", "height")
TAIL_COLUMNS = ("group", "duplicate_of", "verdict", "reasons", "notes", "missing", "warnings", "error")
_SEVERITY = {"error": 5, "block": 4, "restore_face": 3, "reprompt": 2, "reseed": 1, "pass": 0}


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


def load_policy(policy: Policy | str | None = None, overrides: dict[str, Any] | None = None) -> Policy:
    """A Policy from a preset name, a TOML file, or the project's config; ``overrides`` win."""
    from sdeval.config import policy_source
    from sdeval.gates.policy import build_policy

    if isinstance(policy, Policy):
        return policy if not overrides else build_policy_from(policy, overrides)
    return build_policy(policy_source(policy), overrides)


def build_policy_from(policy: Policy, overrides: dict[str, Any]) -> Policy:
    from sdeval.config import TomlSource
    from sdeval.gates.policy import build_policy

    extra = build_policy(TomlSource({}, name="overrides"), overrides)
    return replace(policy, rules=policy.rules + extra.rules,
                   options={**policy.options, **extra.options})


def evaluate(paths: Sequence[str] | str, metrics: Sequence[str], *, options: RunOptions | None = None,
             progress: ProgressFn | None = None) -> "pd.DataFrame":
    """Per-image metric values (no verdicts) as a DataFrame, one row per input image."""
    import pandas as pd

    options = options or RunOptions()
    found = discover([paths] if isinstance(paths, str) else list(paths))
    ms = build_metrics(metrics, options.metric_options)
    rows = list(iter_rows(found.items, ms, options, progress))
    columns = _columns([m.name for m in ms])
    return pd.DataFrame(rows, columns=[c for c in columns if c not in ("verdict", "reasons", "notes")])


def gate(paths: Sequence[str] | str, policy: Policy | str | None = None, *, options: RunOptions | None = None,
         out_dir: str | Path | None = None, progress: ProgressFn | None = None,
         command: str = "gate") -> GateResult:
    """Evaluate ``paths`` under ``policy``; write the result folder when ``out_dir`` is given."""
    started_at = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    policy = policy if isinstance(policy, Policy) else load_policy(policy)
    options = options or RunOptions()
    options = replace(options, metric_options={**policy.options, **options.metric_options})
    found = discover([paths] if isinstance(paths, str) else list(paths))
    metrics = build_metrics(policy.metrics, options.metric_options)
    extractors = extractors_of(metrics)
    stats = RunStats()
    rows: list[dict[str, Any]] = []
    for row in iter_rows(found.items, metrics, options, progress, stats):
        v = judge_image(row, policy)
        row.update(verdict=v.verdict, reasons=list(v.reasons), notes=list(v.notes))
        rows.append(row)
    batch = judge_batch((r["verdict"] for r in rows), policy)
    columns = _columns([m.name for m in metrics])
    summary = _summary(command, rows, batch, policy, found, stats, protocol_of(metrics, extractors, options),
                       started_at, time.perf_counter() - t0, [m.name for m in metrics])
    result = GateResult(rows=rows, batch=batch, policy=policy, summary=summary, columns=columns)
    if out_dir is not None:
        result = write_result_folder(result, Path(out_dir))
    return result


def write_result_folder(result: GateResult, out_dir: Path) -> GateResult:
    """results.jsonl, results.csv and summary.json, each written atomically."""
    from sdeval.reports.writers import write_result_files

    summary = write_result_files(out_dir, result.rows, result.columns, result.summary, SCHEMA_VERSION)
    return replace(result, out_dir=out_dir, summary=summary)


def default_out_dir(command: str) -> Path:
    return Path("reports") / f"{command}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _columns(metric_names: Sequence[str]) -> tuple[str, ...]:
    return ID_COLUMNS + META_COLUMNS + tuple(metric_names) + TAIL_COLUMNS


def _summary(command: str, rows: list[dict[str, Any]], batch: BatchVerdict, policy: Policy, found: Discovery,
             stats: RunStats, protocol: dict[str, Any], started_at: datetime, seconds: float,
             metric_names: Sequence[str]) -> dict[str, Any]:
    rule_counts: Counter[str] = Counter()
    for r in rows:
        for reason in r["reasons"]:
            rule_counts[_reason_key(reason)] += 1
    worst = sorted((r for r in rows if r["verdict"] != "pass"),
                   key=lambda r: (-_SEVERITY[r["verdict"]], -len(r["reasons"]), r["path"]))[:10]
    duplicates = [{"path": r["path"], "duplicate_of": r["duplicate_of"]} for r in rows if r["duplicate_of"]]
    return {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "started_at": started_at.isoformat(timespec="seconds"),
        "passed": batch.passed,
        "verdict": batch.as_dict(),
        "counts": {v: batch.counts.get(v, 0) for v in VERDICTS},
        "images": len(rows),
        "inputs": {"skipped_non_images": dict(found.skipped), "manifests": list(found.manifests),
                   "duplicates": duplicates},
        "top_reasons": [{"reason": k, "count": n} for k, n in rule_counts.most_common(10)],
        "worst": [{"path": r["path"], "verdict": r["verdict"], "reasons": r["reasons"]} for r in worst],
        "metrics": {name: _describe([r.get(name) for r in rows]) for name in metric_names},
        "policy": policy.as_dict(),
        "protocol": protocol,
        "features": {fid: {"cache_hits": hits, "computed": computed}
                     for fid, (hits, computed) in stats.features.items()},
        "cache_problems": list(stats.cache_problems),
        "timing": {"seconds": round(seconds, 3), "pipeline_seconds": round(stats.seconds, 3),
                   "images_per_second": round(len(rows) / seconds, 2) if seconds > 0 else None},
    }


def _reason_key(reason: str) -> str:
    """Group reasons by rule, not by value: 'pixel_std 0.3 < 2 (...) -> reseed' → 'pixel_std < 2 -> reseed'."""
    if reason.startswith("error: "):
        msg = reason[len("error: "):]
        return "error: " + msg.split(":")[0]
    parts = reason.split(" ")
    if len(parts) >= 4 and parts[2] in ("<", "<=", ">", ">=", "==", "!="):
        action = reason.rsplit("-> ", 1)[-1]
        return f"{parts[0]} {parts[2]} {parts[3]} -> {action}"
    if " missing: " in reason:
        return reason.split(" missing: ")[0] + " missing"
    return reason


def _describe(values: list[Any]) -> dict[str, Any]:
    vals = [v for v in values if isinstance(v, (int, float))]
    if not vals:
        return {"n": 0, "missing": len(values)}
    vals.sort()
    n = len(vals)
    return {"n": n, "missing": len(values) - n, "mean": sum(vals) / n, "min": vals[0],
            "median": vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2, "max": vals[-1]}


def with_rows(result: GateResult, rows: list[dict[str, Any]], *, batch: BatchVerdict | None = None,
              extra_columns: Sequence[str] = (), summary_updates: dict[str, Any] | None = None) -> GateResult:
    """``result`` with new rows (after regeneration or quarantine): the batch verdict and the
    row-derived parts of the summary (counts, reasons, worst images, metric stats) recomputed."""
    batch = batch or judge_batch((r["verdict"] for r in rows), result.policy)
    columns = result.columns + tuple(c for c in extra_columns if c not in result.columns)
    rule_counts: Counter[str] = Counter(_reason_key(reason) for r in rows for reason in r["reasons"])
    worst = sorted((r for r in rows if r["verdict"] != "pass"),
                   key=lambda r: (-_SEVERITY[r["verdict"]], -len(r["reasons"]), r["path"]))[:10]
    summary = {**result.summary,
               "passed": batch.passed, "verdict": batch.as_dict(),
               "counts": {v: batch.counts.get(v, 0) for v in VERDICTS}, "images": len(rows),
               "top_reasons": [{"reason": k, "count": n} for k, n in rule_counts.most_common(10)],
               "worst": [{"path": r["path"], "verdict": r["verdict"], "reasons": r["reasons"]} for r in worst],
               "metrics": {name: _describe([r.get(name) for r in rows]) for name in result.summary.get("metrics", {})},
               **(summary_updates or {})}
    return replace(result, rows=rows, batch=batch, summary=summary, columns=columns)
