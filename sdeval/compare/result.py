"""A comparison's result and its folder: compare.json, metrics.csv, pairs.csv, unpaired.csv and each
arm's results.jsonl / results.csv (the gate/eval row schema), all written in one atomic step.

compare.json is the one source a report renders from (DESIGN.md: reports read a result folder):
arms (inputs, counts, their rows' files), the baseline, pairing counts and rules, the protocol, every
(arm, metric) test with raw and Holm-adjusted p and its decision, rankings, and the verdict.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from sdeval.compare.analysis import METRIC_COLUMNS
from sdeval.compare.arms import folder_name

if TYPE_CHECKING:
    import pandas as pd

    from sdeval.compare.analysis import Analysis
    from sdeval.compare.pairing import ArmPairing
    from sdeval.compare.run import ArmData, CompareSettings, _Merged, _Spec

COMPARE_SCHEMA_VERSION = 1
PAIR_ID_COLUMNS = ("arm", "baseline", "key", "cluster", "rule", "prompt", "seed", "baseline_path", "arm_path",
                   "baseline_relpath", "arm_relpath", "baseline_href", "arm_href", "baseline_row", "arm_row")
UNPAIRED_COLUMNS = ("comparison", "arm", "path", "key", "reason")


@dataclass(frozen=True)
class CompareResult:
    """What ``compare`` found (rank 0 holds the rows; other ranks get ``report`` and ``metric_rows``)."""

    report: Mapping[str, Any]
    metric_rows: list[dict[str, Any]]
    pair_rows: list[dict[str, Any]]
    unpaired: list[dict[str, Any]]
    #: arm name -> its per-image rows (gate/eval schema)
    arm_rows: Mapping[str, list[dict[str, Any]]]
    columns: tuple[str, ...]
    out_dir: Path | None = None

    @property
    def regression(self) -> bool:
        return bool(self.report["verdict"]["regression"])

    @property
    def baseline(self) -> str:
        return str(self.report["baseline"])

    @property
    def metrics(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame(self.metric_rows)

    @property
    def pairs(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame(self.pair_rows)


def build_result(*, spec: "_Spec", settings: "CompareSettings", arms: Sequence["ArmData"], baseline: str,
                 pairings: Mapping[str, "ArmPairing"], unassigned: Sequence[Mapping[str, Any]],
                 analysis: "Analysis", merged: "_Merged", world_size: int, started_at: datetime, seconds: float,
                 arms_by: str | None, command: str) -> CompareResult:
    from sdeval.compare.run import _spec_protocol
    from sdeval.results.schema import eval_columns, gate_columns
    from sdeval.results.summary import metric_stats

    names = [m.name for m in spec.row_metrics]
    columns = gate_columns(names) if spec.policy is not None else eval_columns(names)
    base = next(a for a in arms if a.name == baseline)
    folders = {a.name: folder_name(i, a.name) for i, a in enumerate(arms)}
    arm_entries = []
    for a in arms:
        entry: dict[str, Any] = {
            "name": a.name, "inputs": list(a.inputs), "baseline": a.name == baseline,
            "images": len(a.rows), "errors": sum(1 for r in a.rows if r.get("error")),
            "duplicates": sum(1 for r in a.rows if r.get("duplicate_of")),
            "skipped_non_images": dict(a.skipped), "manifests": list(a.manifests),
            "results": f"arms/{folders[a.name]}/results.jsonl",
            "results_csv": f"arms/{folders[a.name]}/results.csv",
            "metrics": metric_stats(a.rows, names),
        }
        if a.name in pairings:
            c = pairings[a.name].counts()
            entry.update(paired=c["pairs"], unpaired=c["unpaired_arm"], ambiguous_keys=c["ambiguous_keys"])
        else:  # the baseline: its share of each comparison
            entry["paired_with"] = {n: len(p.pairs) for n, p in pairings.items()}
            entry["unpaired_with"] = {n: p.counts()["unpaired_baseline"] for n, p in pairings.items()}
        if spec.policy is not None:
            passed = sum(1 for r in a.rows if r.get("verdict") == "pass")
            entry["pass_rate"] = passed / len(a.rows) if a.rows else None
        arm_entries.append(entry)
    pair_rows = _pair_rows(arms, base, pairings, [m for m in names], spec.policy is not None)
    unpaired = [{"comparison": f"{p.arm} vs {p.baseline}", "arm": u.arm, "path": u.path, "key": u.key,
                 "reason": u.reason} for p in pairings.values() for u in p.unpaired]
    unpaired += [{"comparison": None, **u} for u in unassigned]
    ref_stats = merged.reference_stats
    warnings = list(merged.reference_warnings)
    for r in analysis.rows:
        for w in r.get("warnings") or []:
            text = f"{r['metric']} ({r['arm']}): {w}"
            if text not in warnings:
                warnings.append(text)
    if unassigned:
        warnings.append(f"{len(unassigned)} image(s) have no value for --arms-by {arms_by} and are in no arm")
    report: dict[str, Any] = {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "command": command,
        "started_at": started_at.isoformat(timespec="seconds"),
        "baseline": baseline,
        "arms_by": arms_by,
        "arms": arm_entries,
        "pairing": {"pair_by": settings.pair_by, "rules_order": ["output_node", "size", "file_order"],
                    "comparisons": [p.counts() for p in pairings.values()],
                    "unassigned": len(unassigned)},
        "settings": settings.as_dict(),
        "metrics": analysis.rows,
        "rankings": analysis.rankings,
        "verdict": {"regression": analysis.regression, "reasons": list(analysis.reasons),
                    "fail_on_regression": settings.fail_on_regression,
                    "failed": analysis.regression and settings.fail_on_regression},
        "reference": merged.reference_entry,
        "policy": spec.policy.as_dict() if spec.policy is not None else None,
        "warnings": warnings,
        "protocol": _spec_protocol(spec, world_size),
        "features": {fid: {"cache_hits": h, "computed": c} for fid, (h, c) in merged.stats.features.items()},
        "reference_features": ({fid: {"cache_hits": h, "computed": c} for fid, (h, c) in ref_stats.features.items()}
                               if ref_stats is not None else {}),
        "cache_problems": list(merged.stats.cache_problems) + (list(ref_stats.cache_problems) if ref_stats else []),
        "timing": {"seconds": round(seconds, 3), "pipeline_seconds": round(merged.stats.seconds, 3),
                   "reference_seconds": round(ref_stats.seconds, 3) if ref_stats else 0.0,
                   "images": len(merged.rows)},
        "files": {"metrics": "metrics.csv", "pairs": "pairs.csv", "unpaired": "unpaired.csv"},
    }
    return CompareResult(report=report, metric_rows=analysis.rows, pair_rows=pair_rows, unpaired=unpaired,
                         arm_rows={a.name: a.rows for a in arms}, columns=tuple(columns))


def _pair_rows(arms: Sequence["ArmData"], base: "ArmData", pairings: Mapping[str, "ArmPairing"],
               metrics: Sequence[str], with_policy: bool) -> list[dict[str, Any]]:
    by_name = {a.name: a for a in arms}
    out = []
    for name, pairing in pairings.items():
        arm = by_name[name]
        for p in pairing.pairs:
            b, a = base.rows[p.base], arm.rows[p.arm]
            row: dict[str, Any] = {
                "arm": name, "baseline": base.name, "key": p.key, "cluster": p.cluster, "rule": p.rule,
                "prompt": b.get("prompt"), "seed": b.get("seed"),
                "baseline_path": b["path"], "arm_path": a["path"],
                "baseline_relpath": base.relpaths[p.base], "arm_relpath": arm.relpaths[p.arm],
                "baseline_row": p.base, "arm_row": p.arm,
            }
            for m in metrics:
                vb, va = b.get(m), a.get(m)
                row[f"{m}_baseline"], row[f"{m}_arm"] = vb, va
                row[f"{m}_diff"] = va - vb if va is not None and vb is not None else None
            if with_policy:
                row["verdict_baseline"], row["verdict_arm"] = b.get("verdict"), a.get("verdict")
            out.append(row)
    return out


def pair_columns(metrics: Sequence[str], with_policy: bool) -> list[str]:
    cols = list(PAIR_ID_COLUMNS)
    for m in metrics:
        cols += [f"{m}_baseline", f"{m}_arm", f"{m}_diff"]
    if with_policy:
        cols += ["verdict_baseline", "verdict_arm"]
    return cols


def write_compare_folder(result: CompareResult, out_dir: str | Path | None) -> CompareResult:
    """Every file of the folder in one atomic step; ``*_href`` are the images' paths relative to it."""
    if out_dir is None:
        return result
    from sdeval.core.errors import OutputError
    from sdeval.core.io import atomic_write_many, json_bytes, jsonl_bytes
    from sdeval.inputs.discovery import RESULT_MARKER
    from sdeval.pipeline.rows import SCHEMA_VERSION
    from sdeval.results.files import csv_bytes

    out = Path(out_dir)
    for row in result.pair_rows:
        row["baseline_href"] = _href(row["baseline_path"], out)
        row["arm_href"] = _href(row["arm_path"], out)
    report = {**result.report, "out_dir": str(out)}
    with_policy = any("verdict_arm" in r for r in result.pair_rows)
    names = _pair_metric_names(result)
    extra = sorted({k for r in result.metric_rows for k in r} - set(METRIC_COLUMNS))
    files: dict[Path, bytes] = {
        out / "compare.json": json_bytes(report),
        out / "metrics.csv": csv_bytes(result.metric_rows, list(METRIC_COLUMNS) + extra),
        out / "pairs.csv": csv_bytes(result.pair_rows, pair_columns(names, with_policy)),
        out / "unpaired.csv": csv_bytes(result.unpaired, list(UNPAIRED_COLUMNS)),
    }
    schema = {"schema_version": SCHEMA_VERSION}
    for entry in report["arms"]:
        rows = result.arm_rows[entry["name"]]
        files[out / entry["results"]] = jsonl_bytes({**schema, **{c: r.get(c) for c in result.columns}}
                                                    for r in rows)
        files[out / entry["results_csv"]] = csv_bytes(rows, result.columns)
    marker = out / RESULT_MARKER
    if not marker.exists():
        files[marker] = b"sdeval result folder: sdeval does not evaluate the files below this folder\n"
    try:
        for path in files:
            path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_many(files)
    except OSError as exc:
        raise OutputError(f"cannot write the result folder {out}: {exc.strerror or exc}; "
                          "the previous result files (if any) are unchanged") from exc
    return replace(result, report=report, out_dir=out)


def _metric_of(row: Mapping[str, Any]) -> list[str]:
    return [k[: -len("_diff")] for k in row if k.endswith("_diff")]


def _pair_metric_names(result: CompareResult) -> list[str]:
    names: list[str] = []
    for r in result.pair_rows[:1]:
        names = _metric_of(r)
    return names


def _href(path: str, out: Path) -> str:
    try:
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(out))).as_posix()
    except ValueError:
        return Path(path).as_posix()
