"""The compare report's context: verdict, decisions per (metric, arm), forest plot, distributions per
arm, side-by-side pairs for the largest regressions and improvements, unpaired and ambiguous images.

Reads compare.json, pairs.csv (which pairs, by row index into each arm's results.jsonl) and the arms'
rows; image paths, prompts and values come from the JSONL rows, not the CSV (whose text cells carry
the spreadsheet formula guard).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from sdeval.reports.folder import ResultFolder
from sdeval.reports.html import _header, _prompt, fmt_num
from sdeval.reports.thumbs import Thumbnailer

DECISIONS = ("regressed", "improved", "non_inferior", "no_change", "inconclusive")
#: pairs shown per (arm, metric) and direction
PAIRS_EACH = 3
PAIR_SIDE = 256


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _pairs(folder: ResultFolder, metric_rows: Sequence[Mapping[str, Any]], max_pairs: int) -> list[dict[str, Any]]:
    """Per (arm, metric) of kind image: the pairs with the largest oriented loss and gain."""
    by_arm: dict[str, list[Mapping[str, str]]] = {}
    for p in folder.pairs:
        by_arm.setdefault(p.get("arm", ""), []).append(p)
    out: list[dict[str, Any]] = []
    budget = max_pairs
    for m in metric_rows:
        if m.get("kind") not in (None, "image") or budget <= 0:
            continue
        metric, arm, base = str(m.get("metric")), str(m.get("arm")), str(m.get("baseline"))
        sign = -1.0 if m.get("higher_is_better") is False else 1.0
        arm_rows, base_rows = folder.arm_rows.get(arm, []), folder.arm_rows.get(base, [])
        scored = []
        for p in by_arm.get(arm, []):
            ai, bi = _int(p.get("arm_row")), _int(p.get("baseline_row"))
            if ai is None or bi is None or not (0 <= ai < len(arm_rows)) or not (0 <= bi < len(base_rows)):
                continue
            a, b = arm_rows[ai], base_rows[bi]
            va, vb = _num(a.get(metric)), _num(b.get(metric))
            if va is None or vb is None:
                continue
            scored.append((sign * (va - vb), str(a.get("path")), a, b))
        if not scored:
            continue
        scored.sort(key=lambda t: (t[0], t[1]))
        worst = [t for t in scored[:PAIRS_EACH] if t[0] < 0]
        best = [t for t in reversed(scored[-PAIRS_EACH:]) if t[0] > 0 and t not in worst]
        for direction, items in (("regression", worst), ("improvement", best)):
            for d, _, a, b in items:
                if budget <= 0:
                    break
                budget -= 1
                out.append({"metric": metric, "arm": arm, "baseline": base, "direction": direction,
                            "delta": d, "arm_value": a.get(metric), "baseline_value": b.get(metric),
                            "prompt": _prompt(b.get("prompt")), "seed": b.get("seed"),
                            "arm_path": str(a.get("path")), "baseline_path": str(b.get("path"))})
    return out


def compare_context(folder: ResultFolder, thumbs: Thumbnailer, max_images: int = 500,
                    report_url: str | None = None) -> dict[str, Any]:
    from sdeval.reports import plots

    c = folder.compare or {}
    arms = [a for a in c.get("arms") or [] if isinstance(a, dict)]
    arm_index = {str(a.get("name")): i for i, a in enumerate(arms)}
    metric_rows = [m for m in c.get("metrics") or [] if isinstance(m, dict)]
    rows = []
    for m in metric_rows:
        decision = str(m.get("decision"))
        rows.append({**m, "decision": decision if decision in DECISIONS else "inconclusive",
                     "arm_i": arm_index.get(str(m.get("arm")), 0), "ci": _ci(m),
                     "warnings": list(m.get("warnings") or [])})
    pairs = _pairs(folder, metric_rows, max(0, max_images // 2))
    thumbs.prepare([(p[k], PAIR_SIDE) for p in pairs for k in ("arm_path", "baseline_path")])
    for p in pairs:
        p["arm_thumb"] = thumbs.get(p["arm_path"], PAIR_SIDE)
        p["baseline_thumb"] = thumbs.get(p["baseline_path"], PAIR_SIDE)
    metrics = list(dict.fromkeys(str(m.get("metric")) for m in metric_rows if m.get("kind") in (None, "image")))
    dist = []
    for metric in metrics:
        svg = plots.distributions([(name, [r.get(metric) for r in rs]) for name, rs in folder.arm_rows.items()], metric)
        if svg:
            dist.append((metric, svg))
    comparisons = [x for x in (c.get("pairing") or {}).get("comparisons") or [] if isinstance(x, dict)]
    ambiguous = [{"comparison": f"{x.get('arm')} vs {x.get('baseline')}", **(a if isinstance(a, dict) else {"key": a})}
                 for x in comparisons for a in x.get("ambiguous") or []]
    verdict = c.get("verdict") or {}
    counts = {d: sum(1 for r in rows if r["decision"] == d) for d in DECISIONS}
    return {
        **_header(folder, "sdeval compare report"),
        "regression": bool(verdict.get("regression")), "verdict": verdict,
        "baseline": c.get("baseline"), "arms": arms, "arm_index": arm_index, "rows": rows,
        "decision_counts": counts, "decisions": list(DECISIONS) + [f"arm-{i}" for i in range(len(arms))],
        "forest": plots.forest(metric_rows), "distributions": dist, "pairs": pairs,
        "unpaired": folder.unpaired[:max_images], "unpaired_total": len(folder.unpaired),
        "ambiguous": ambiguous, "comparisons": comparisons, "rankings": c.get("rankings") or [],
        "settings": c.get("settings") or {}, "warnings": list(dict.fromkeys(c.get("warnings") or [])),
        "protocol": c.get("protocol") or {}, "reference": c.get("reference") or {},
        "human": c.get("human") if isinstance(c.get("human"), dict) else None,
        "timing": c.get("timing") or {}, "report_url": report_url, "shown": 2 * len(pairs), "left_out": 0,
        "pairs_each": PAIRS_EACH,
        "meta": {"kind": "compare", "regression": bool(verdict.get("regression")), "decisions": counts},
    }


def _ci(m: Mapping[str, Any]) -> str:
    lo, hi = m.get("ci_low"), m.get("ci_high")
    if lo is None and hi is None:
        return "–"
    return f"[{fmt_num(lo)}, {fmt_num(hi)}]"
