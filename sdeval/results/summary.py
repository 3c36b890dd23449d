"""The numbers a summary holds that follow from the rows alone: metric statistics, verdict counts,
top reasons and worst images. One builder, used by a gate run and again after regeneration."""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from sdeval.results.schema import SEVERITY, VERDICTS

TOP_REASONS = 10
WORST_IMAGES = 10


def describe(values: Sequence[Any]) -> dict[str, Any]:
    """n, missing, mean, min, median, max of the numeric values (None and text count as missing)."""
    vals = sorted(v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool))
    if not vals:
        return {"n": 0, "missing": len(values)}
    n = len(vals)
    return {"n": n, "missing": len(values) - n, "mean": sum(vals) / n, "min": vals[0],
            "median": vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2, "max": vals[-1]}


def metric_stats(rows: Sequence[Mapping[str, Any]], metric_names: Sequence[str]) -> dict[str, Any]:
    return {name: describe([r.get(name) for r in rows]) for name in metric_names}


def reason_key(reason: str) -> str:
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


def verdict_summary(rows: Sequence[Mapping[str, Any]], counts: Mapping[str, int],
                    metric_names: Sequence[str]) -> dict[str, Any]:
    """counts, images, top_reasons, worst and metrics of judged rows."""
    rule_counts: Counter[str] = Counter(reason_key(reason) for r in rows for reason in r["reasons"])
    worst = sorted((r for r in rows if r["verdict"] != "pass"),
                   key=lambda r: (-SEVERITY[r["verdict"]], -len(r["reasons"]), r["path"]))[:WORST_IMAGES]
    return {
        "counts": {v: counts.get(v, 0) for v in VERDICTS},
        "images": len(rows),
        "top_reasons": [{"reason": k, "count": n} for k, n in rule_counts.most_common(TOP_REASONS)],
        "worst": [{"path": r["path"], "verdict": r["verdict"], "reasons": r["reasons"]} for r in worst],
        "metrics": metric_stats(rows, metric_names),
    }
