"""GitHub Actions: the job summary (``$GITHUB_STEP_SUMMARY``, at most 1 MiB per step) and workflow
commands for annotations, escaped as the runner requires (REFERENCE.md §8). Returned as data: the
CLI prints the annotations, the library never does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdeval.reports.folder import ResultFolder
from sdeval.reports.html import fmt_num, worst_first

#: GitHub's limit for one step's summary
SUMMARY_LIMIT = 1024 * 1024
CUT_NOTE = "\n\n_(summary cut to stay under GitHub's 1 MiB job-summary limit; the whole report is in the result folder)_\n"
#: GitHub shows at most 10 error and 10 warning annotations per step
MAX_ANNOTATIONS = 10


@dataclass(frozen=True)
class Annotation:
    level: str  # error | warning | notice
    message: str
    title: str = ""
    file: str | None = None

    def command(self) -> str:
        props = []
        if self.file:
            props.append(f"file={escape_property(self.file)}")
        if self.title:
            props.append(f"title={escape_property(self.title)}")
        return f"::{self.level}{' ' + ','.join(props) if props else ''}::{escape_data(self.message)}"


def escape_data(s: str) -> str:
    return str(s).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(s: str) -> str:
    return escape_data(s).replace(":", "%3A").replace(",", "%2C")


def cut_summary(text: str, limit: int = SUMMARY_LIMIT) -> tuple[str, bool]:
    """``text`` cut at a line boundary so that it and the note fit in ``limit`` bytes; (text, cut?)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text, False
    room = limit - len(CUT_NOTE.encode("utf-8"))
    head = data[:room].decode("utf-8", "ignore")
    if "\n" in head:
        head = head[: head.rfind("\n")]
    return head + CUT_NOTE, True


def append_step_summary(path: Path, text: str, limit: int = SUMMARY_LIMIT) -> bool:
    """Append to the step summary file, keeping the whole file under ``limit``; True when cut."""
    try:
        used = path.stat().st_size
    except OSError:
        used = 0
    body, cut = cut_summary(text + "\n", max(limit - used, len(CUT_NOTE.encode()) + 1))
    with path.open("a", encoding="utf-8") as f:
        f.write(body)
    return cut


def annotations(folder: ResultFolder) -> list[Annotation]:
    """The failures of a run as annotations: the verdict, then the worst images / regressions."""
    out: list[Annotation] = []
    s = folder.summary
    if folder.kind == "gate":
        v = s.get("verdict") or {}
        if not s.get("passed"):
            out.append(Annotation("error", "; ".join(v.get("reasons") or ["gate failed"]), title="sdeval gate failed"))
        bad = [r for r in worst_first(folder.rows) if r.get("verdict") != "pass"]
        for r in bad[:MAX_ANNOTATIONS - 1]:
            level = "error" if r.get("verdict") in ("block", "error") else "warning"
            out.append(Annotation(level, "; ".join(r.get("reasons") or [str(r.get("error"))]),
                                  title=f"sdeval {r.get('verdict')}", file=str(r.get("path"))))
        if len(bad) > MAX_ANNOTATIONS - 1:
            out.append(Annotation("notice", f"{len(bad) - MAX_ANNOTATIONS + 1} more failing image(s) in the report",
                                  title="sdeval gate"))
    elif folder.kind == "eval":
        for f in s.get("failures") or []:
            out.append(Annotation("error", f, title="sdeval eval --fail-if"))
        for w in (s.get("warnings") or [])[:MAX_ANNOTATIONS]:
            out.append(Annotation("warning", w, title="sdeval eval"))
    else:
        c = folder.compare or {}
        verdict = c.get("verdict") or {}
        if verdict.get("regression"):
            out.append(Annotation("error", "; ".join(verdict.get("reasons") or ["regression"]),
                                  title="sdeval compare: regression"))
        for m in (c.get("metrics") or []):
            if m.get("decision") == "regressed" and len(out) < MAX_ANNOTATIONS:
                out.append(Annotation("error", _metric_line(m), title=f"{m.get('metric')} regressed"))
    return out


def _metric_line(m: dict[str, Any]) -> str:
    return (f"{m.get('arm')} vs {m.get('baseline')}: {m.get('metric')} delta {fmt_num(m.get('delta'))} "
            f"[{fmt_num(m.get('ci_low'))}, {fmt_num(m.get('ci_high'))}], p_adj {fmt_num(m.get('p_adjusted'))}")
