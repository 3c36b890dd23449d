"""The HTML report: one jinja2 environment, one context builder per result kind.

Autoescape is turned on explicitly (``select_autoescape`` would leave ``.j2`` templates raw:
REFERENCE.md §8); JSON reaches a <script> only through ``|tojson``; the only markup inserted
unescaped is matplotlib's SVG, which draws text as paths and has its comments stripped
(:mod:`sdeval.reports.plots`). Every string from a result folder is data, never markup.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from sdeval.reports.folder import ResultFolder
from sdeval.reports.thumbs import Thumbnailer
from sdeval.results.schema import SEVERITY, VERDICTS

#: images shown (with thumbnails) by default; the rest are in the CSV
DEFAULT_MAX_IMAGES = 500
#: a prompt longer than this is folded (the whole text stays in the page)
PROMPT_FOLD = 240
ATTEMPT_SIDE = 112


def environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sdeval.reports", "templates"),
        autoescape=True,  # explicitly on for every template, whatever its extension
        undefined=jinja2.ChainableUndefined,  # an old or partial folder lacks keys: render what is there
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["num"] = fmt_num
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * float(v):.1f}%"
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return env


def fmt_num(v: Any, digits: int = 4) -> str:
    """A number for a table cell: 4 significant digits, integers as integers, '–' for none."""
    if v is None or v == "":
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.{digits}g}"
    try:
        return fmt_num(float(v), digits)
    except (TypeError, ValueError):
        return str(v)


def fires(op: str, value: float, threshold: float) -> bool:
    return {"<": value < threshold, "<=": value <= threshold, ">": value > threshold,
            ">=": value >= threshold, "==": value == threshold, "!=": value != threshold}.get(op, False)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def worst_first(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Failed first: most severe verdict, then the most reasons, then path (stable across renders)."""
    return sorted(rows, key=lambda r: (-SEVERITY.get(str(r.get("verdict")), 0), -len(r.get("reasons") or ()),
                                       str(r.get("path"))))


def _header(folder: ResultFolder, title: str) -> dict[str, Any]:
    s = folder.summary
    versions = (s.get("protocol") or {}).get("versions") or {}
    return {"title": title, "kind": folder.kind, "started_at": s.get("started_at"),
            "folder": str(folder.path), "sdeval_version": versions.get("sdeval"),
            "rendered_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _prompt(text: Any) -> dict[str, Any]:
    t = "" if text is None else str(text)
    return {"text": t, "short": t if len(t) <= PROMPT_FOLD else t[:PROMPT_FOLD] + "…", "folded": len(t) > PROMPT_FOLD}


# -- gate ----------------------------------------------------------------------------------------------

def _rule_text(rule: Mapping[str, Any]) -> str:
    return f"{rule.get('metric')} {rule.get('op')} {fmt_num(rule.get('threshold'))} → {rule.get('action')}"


def _cells(row: Mapping[str, Any], metrics: Sequence[str], rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    cells = []
    for m in metrics:
        v = row.get(m)
        mine = [r for r in rules if r.get("metric") == m]
        failing = []
        for r in mine:
            t = r.get("threshold")
            if _is_num(v) and _is_num(t):
                if fires(str(r.get("op")), float(v), float(t)):
                    failing.append(_rule_text(r))
            elif v is None and r.get("on_missing") == "fire" and row.get("verdict") != "error":
                failing.append(_rule_text(r) + " (missing)")
        unread = row.get("verdict") == "error"
        cells.append({"metric": m, "value": fmt_num(v), "sort": float(v) if _is_num(v) else "",
                      "limits": [] if unread else [f"{r.get('op')} {fmt_num(r.get('threshold'))}" for r in mine],
                      "failing": failing})
    return cells


def _lineage(row: Mapping[str, Any], thumbs: Thumbnailer) -> list[dict[str, Any]] | None:
    regen = row.get("regeneration")
    if not isinstance(regen, dict) or not regen.get("attempts"):
        return None
    orig = row.get("regenerated_from") or row
    steps = [{"label": "original", "seed": regen.get("original_seed", orig.get("seed")),
              "verdict": orig.get("verdict"), "thumb": thumbs.get(orig.get("path"), ATTEMPT_SIDE),
              "note": "; ".join(orig.get("reasons") or [])}]
    for a in regen["attempts"]:
        path = a.get("path") or next(iter(a.get("files") or []), None)
        steps.append({"label": f"attempt {a.get('attempt')} ({a.get('mutation')})", "seed": a.get("seed"),
                      "verdict": a.get("verdict") or "error", "thumb": thumbs.get(path, ATTEMPT_SIDE),
                      "note": a.get("error") or "; ".join(a.get("reasons") or [])})
    return steps


def _lineage_paths(row: Mapping[str, Any]) -> list[tuple[str, int]]:
    regen = row.get("regeneration")
    if not isinstance(regen, dict) or not regen.get("attempts"):
        return []
    orig = row.get("regenerated_from") or row
    out = [(str(orig.get("path")), ATTEMPT_SIDE)]
    for a in regen["attempts"]:
        p = a.get("path") or next(iter(a.get("files") or []), None)
        if p:
            out.append((str(p), ATTEMPT_SIDE))
    return out


def gate_context(folder: ResultFolder, thumbs: Thumbnailer, max_images: int = DEFAULT_MAX_IMAGES,
                 report_url: str | None = None) -> dict[str, Any]:
    from sdeval.reports import plots

    s = folder.summary
    policy = s.get("policy") or {}
    rules = [r for r in policy.get("rules") or [] if isinstance(r, dict)]
    metrics = list((s.get("metrics") or {}).keys())
    units = {m: (p or {}).get("unit") for m, p in ((s.get("protocol") or {}).get("metrics") or {}).items()}
    ordered = worst_first(folder.rows)
    shown = ordered[:max_images]
    thumbs.prepare([(str(r.get("path")), thumbs.max_side) for r in shown]
                   + [p for r in shown for p in _lineage_paths(r)])
    images = []
    for i, r in enumerate(shown):
        verdict = str(r.get("verdict"))
        images.append({
            "n": i + 1, "path": str(r.get("path")), "verdict": verdict, "severity": SEVERITY.get(verdict, 0),
            "thumb": thumbs.get(str(r.get("path"))), "prompt": _prompt(r.get("prompt")), "seed": r.get("seed"),
            "size": f"{r.get('width')}×{r.get('height')}" if r.get("width") else "",
            "cells": _cells(r, metrics, rules), "reasons": list(r.get("reasons") or []),
            "notes": list(r.get("notes") or []), "warnings": list(r.get("warnings") or []),
            "error": r.get("error"), "duplicate_of": r.get("duplicate_of"),
            "lineage": _lineage(r, thumbs),
            "regen_status": (r.get("regeneration") or {}).get("status") if isinstance(r.get("regeneration"), dict) else None,
        })
    thresholds = {m: [(f"{r.get('op')} {fmt_num(r.get('threshold'))}", float(r["threshold"]))
                      for r in rules if r.get("metric") == m and _is_num(r.get("threshold"))] for m in metrics}
    plots_svg = [(m, plots.histogram([r.get(m) for r in folder.rows], f"{m}" + (f" ({units[m]})" if units.get(m) else ""),
                                     thresholds[m])) for m in metrics]
    verdict = s.get("verdict") or {}
    counts = s.get("counts") or {}
    regen = s.get("regeneration") if isinstance(s.get("regeneration"), dict) else None
    return {
        **_header(folder, "sdeval gate report"),
        "passed": bool(s.get("passed")), "verdict": verdict, "pass_rate": verdict.get("pass_rate"),
        "counts": [(v, counts.get(v, 0)) for v in VERDICTS], "total": s.get("images", len(folder.rows)),
        "top_reasons": s.get("top_reasons") or [], "rules": [{**r, "text": _rule_text(r)} for r in rules],
        "policy": {k: v for k, v in policy.items() if k != "rules"},
        "metrics": metrics, "units": units, "images": images, "left_out": len(ordered) - len(shown),
        "max_images": max_images, "plots": [(m, svg) for m, svg in plots_svg if svg],
        "regeneration": regen, "inputs": s.get("inputs") or {}, "timing": s.get("timing") or {},
        "protocol": s.get("protocol") or {}, "warnings": list(dict.fromkeys(s.get("cache_problems") or [])),
        "report_url": report_url,
        "meta": {"kind": "gate", "passed": bool(s.get("passed")), "counts": counts,
                 "images": s.get("images"), "shown": len(images)},
    }


# -- eval ----------------------------------------------------------------------------------------------

def eval_context(folder: ResultFolder, thumbs: Thumbnailer, max_images: int = DEFAULT_MAX_IMAGES,
                 report_url: str | None = None) -> dict[str, Any]:
    from sdeval.reports import plots

    s = folder.summary
    protocol = s.get("protocol") or {}
    set_protocol = protocol.get("set_metrics") or {}
    set_metrics = []
    for name, entry in (s.get("set_metrics") or {}).items():
        entry = entry if isinstance(entry, dict) else {"value": entry}
        details = {k: v for k, v in entry.items() if k not in ("value", "warnings")}
        set_metrics.append({"name": name, "value": entry.get("value"), "details": details,
                            "warnings": list(entry.get("warnings") or []),
                            "protocol": set_protocol.get(name) or {}})
    metrics = list((s.get("metrics") or {}).keys())
    units = {m: (p or {}).get("unit") for m, p in (protocol.get("metrics") or {}).items()}
    plots_svg = [(m, plots.histogram([r.get(m) for r in folder.rows], m + (f" ({units[m]})" if units.get(m) else "")))
                 for m in metrics]
    errors = [r for r in folder.rows if r.get("error")]
    hib = {m: (p or {}).get("higher_is_better") for m, p in (protocol.get("metrics") or {}).items()}
    # the lowest-scoring images on the first per-image metric, then the errors
    key_metric = metrics[0] if metrics else None

    def badness(r: Mapping[str, Any]) -> tuple[int, float, str]:
        v = r.get(key_metric) if key_metric else None
        if r.get("error") or not _is_num(v):
            return (0, 0.0, str(r.get("path")))
        return (1, float(v) if hib.get(key_metric, True) is not False else -float(v), str(r.get("path")))
    ordered = sorted(folder.rows, key=badness)
    shown = ordered[:max_images]
    thumbs.prepare([(str(r.get("path")), thumbs.max_side) for r in shown])
    images = [{"n": i + 1, "path": str(r.get("path")), "thumb": thumbs.get(str(r.get("path"))),
               "prompt": _prompt(r.get("prompt")), "seed": r.get("seed"), "error": r.get("error"),
               "cells": [{"metric": m, "value": fmt_num(r.get(m)), "sort": float(r[m]) if _is_num(r.get(m)) else "",
                          "limits": [], "failing": []} for m in metrics],
               "warnings": list(r.get("warnings") or [])} for i, r in enumerate(shown)]
    return {
        **_header(folder, "sdeval eval report"),
        "passed": bool(s.get("passed")), "failures": list(s.get("failures") or []),
        "fail_if": list(s.get("fail_if") or []), "set_metrics": set_metrics,
        "metric_stats": s.get("metrics") or {}, "metrics": metrics, "units": units,
        "warnings": list(dict.fromkeys([*(s.get("warnings") or []), *(s.get("cache_problems") or [])])),
        "n_images": s.get("images", len(folder.rows)), "n_errors": s.get("errors", len(errors)),
        "reference": s.get("reference") or {}, "protocol": protocol,
        "models": _models(protocol), "plots": [(m, svg) for m, svg in plots_svg if svg],
        "images": images, "left_out": len(ordered) - len(shown), "max_images": max_images,
        "key_metric": key_metric, "timing": s.get("timing") or {}, "report_url": report_url,
        "meta": {"kind": "eval", "passed": bool(s.get("passed")), "values": s.get("values") or {}},
    }


def _models(protocol: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every model behind the numbers, with its weights hash, from the protocol's feature entries."""
    out = []
    sources = list((protocol.get("features") or {}).values()) + list((protocol.get("set_metrics") or {}).values())
    for entry in sources:
        if not isinstance(entry, dict):
            continue
        model = entry.get("model") or entry.get("weights") or entry.get("clip_model")
        digest = entry.get("model_sha256") or entry.get("weights_sha256") or entry.get("sha256")
        if model or digest:
            item = {"feature": entry.get("id") or entry.get("name") or entry.get("feature"), "model": model,
                    "sha256": digest, "mode": entry.get("mode") or entry.get("preprocessing")}
            if item not in out:
                out.append(item)
    return out


def render_html(template: str, context: Mapping[str, Any]) -> str:
    return environment().get_template(template).render(**context)
