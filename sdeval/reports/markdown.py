"""The Markdown job summary: the verdict, the key table, links to the HTML report (``--report-url``).

GitHub renders HTML inside a job summary, so untrusted text is escaped for HTML as well as for
Markdown (``|`` would split a table cell, ``[`` start a link, ``<`` a tag).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from sdeval.reports.folder import ResultFolder
from sdeval.reports.html import fmt_num, worst_first

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
WORST_LISTED = 10


def md(text: Any, limit: int = 300) -> str:
    """Untrusted text as inert Markdown on one line."""
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


def _links(report_url: str | None, files: Sequence[str]) -> list[str]:
    if not report_url:
        return []
    base = report_url.rstrip("/")
    links = [f"[{md(f)}]({base}/{f})" for f in files]
    return ["Report: " + " · ".join(links), ""]


def gate_markdown(folder: ResultFolder, report_url: str | None = None) -> str:
    s = folder.summary
    v = s.get("verdict") or {}
    word = "✅ passed" if s.get("passed") else "❌ failed"
    lines = [f"## sdeval gate {word}", "",
             f"{s.get('images', len(folder.rows))} image(s), pass rate {fmt_num(100 * (v.get('pass_rate') or 0), 3)}%"
             + (": " + md("; ".join(v.get("reasons") or [])) if v.get("reasons") else ""), ""]
    lines += _links(report_url, ["report.html", "results.csv", "junit.xml"])
    counts = s.get("counts") or {}
    lines += _table(["verdict", "images"], [[k, n] for k, n in counts.items() if n])
    if s.get("top_reasons"):
        lines += ["### Most frequent reasons", ""]
        lines += _table(["reason", "images"], [[md(r["reason"]), r["count"]] for r in s["top_reasons"]])
    regen = s.get("regeneration")
    if isinstance(regen, dict) and regen.get("enabled"):
        lines += [f"Regeneration: {regen.get('accepted')}/{regen.get('images')} accepted "
                  f"(rate {fmt_num(regen.get('acceptance_rate'))}), {fmt_num(regen.get('attempts_per_accepted'))} "
                  "attempts per accepted image", ""]
    worst = [r for r in worst_first(folder.rows) if r.get("verdict") != "pass"][:WORST_LISTED]
    if worst:
        lines += ["### Worst images", ""]
        lines += _table(["image", "verdict", "reasons"],
                        [[md(r.get("path"), 120), r.get("verdict"), md("; ".join(r.get("reasons") or []))]
                         for r in worst])
    return "\n".join(lines)


def eval_markdown(folder: ResultFolder, report_url: str | None = None) -> str:
    s = folder.summary
    word = "✅ passed" if s.get("passed") else "❌ failed"
    lines = [f"## sdeval eval {word}", "", f"{s.get('images')} generated image(s), {s.get('errors', 0)} unreadable", ""]
    lines += _links(report_url, ["report.html", "results.csv", "junit.xml"])
    rows = [[md(k), fmt_num((e or {}).get("value") if isinstance(e, dict) else e)]
            for k, e in (s.get("set_metrics") or {}).items()]
    rows += [[md(k), f"mean {fmt_num(d.get('mean'))} (n={d.get('n')})"] for k, d in (s.get("metrics") or {}).items()]
    if rows:
        lines += _table(["metric", "value"], rows)
    for f in s.get("failures") or []:
        lines.append(f"- ❌ {md(f)}")
    for w in s.get("warnings") or []:
        lines.append(f"- ⚠️ {md(w)}")
    return "\n".join(lines) + "\n"


def compare_markdown(folder: ResultFolder, report_url: str | None = None) -> str:
    c = folder.compare or {}
    verdict = c.get("verdict") or {}
    word = "❌ regression" if verdict.get("regression") else "✅ no regression"
    lines = [f"## sdeval compare: {word}", ""]
    for r in verdict.get("reasons") or []:
        lines.append(f"- {md(r)}")
    lines.append("")
    lines += _links(report_url, ["report.html", "metrics.csv", "pairs.csv", "junit.xml"])
    rows = []
    for m in c.get("metrics") or []:
        rows.append([md(m.get("metric")), md(m.get("arm")), fmt_num(m.get("mean_baseline")), fmt_num(m.get("mean_arm")),
                     f"{fmt_num(m.get('delta'))} [{fmt_num(m.get('ci_low'))}, {fmt_num(m.get('ci_high'))}]",
                     fmt_num(m.get("p_adjusted")), md(m.get("decision")), m.get("n_pairs")])
    if rows:
        lines += _table(["metric", "arm", "baseline", "arm mean", "delta [CI]", "p (Holm)", "decision", "pairs"], rows)
    human = c.get("human")
    if isinstance(human, dict) and human.get("pairs"):
        lines += [f"### Human preference ({human.get('votes')} votes)", ""]
        lines += _table(["arm", "against", "win rate", "Wilson 95 %", "sign test p"],
                        [[md(h.get("arm")), md(h.get("other")), fmt_num(h.get("win_rate"), 3),
                          f"[{fmt_num(h.get('wilson_low'), 3)}, {fmt_num(h.get('wilson_high'), 3)}]",
                          fmt_num(h.get("p_sign"), 3)] for h in human["pairs"]])
    return "\n".join(lines)


def markdown(folder: ResultFolder, report_url: str | None = None) -> str:
    fn = {"gate": gate_markdown, "eval": eval_markdown, "compare": compare_markdown}[folder.kind]
    return fn(folder, report_url)
