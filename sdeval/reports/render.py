"""Render a result folder into the formats asked for: report.html, junit.xml, summary.md, report.csv.

One source for every format: the folder's files (:mod:`sdeval.reports.folder`). The end of a gate,
eval or compare run calls :func:`render` on the folder it has just written; ``sdeval report DIR``
calls it on any older one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from sdeval.core.errors import OutputError, UsageError
from sdeval.core.io import atomic_write_many
from sdeval.reports.folder import ResultFolder, load_folder
from sdeval.reports.github import Annotation, annotations
from sdeval.reports.html import DEFAULT_MAX_IMAGES

FORMATS = ("html", "junit", "md", "csv")
DEFAULT_FORMATS = ("html", "junit", "md")
FILE_NAMES = {"html": "report.html", "junit": "junit.xml", "md": "summary.md", "csv": "report.csv"}


@dataclass(frozen=True)
class ReportOptions:
    formats: tuple[str, ...] = DEFAULT_FORMATS
    #: where the report files go (default: the result folder itself)
    out_dir: Path | None = None
    #: thumbnails as files in this folder instead of data URIs (strict Content-Security-Policy viewers)
    assets_dir: Path | None = None
    #: images shown in the HTML page (worst first); the rest are in the CSV
    max_images: int = DEFAULT_MAX_IMAGES
    #: URL prefix where the report files will be published (links in the Markdown summary)
    report_url: str | None = None
    #: the human preference form (compare only)
    human_form: bool = False


@dataclass(frozen=True)
class RenderedReport:
    files: dict[str, Path]
    markdown: str | None
    annotations: list[Annotation] = field(default_factory=list)
    seconds: float = 0.0
    shown: int = 0
    left_out: int = 0
    #: the job summary was cut to stay under GitHub's limit
    step_summary_cut: bool = False


def parse_formats(text: str | Sequence[str] | None) -> tuple[str, ...]:
    if text is None:
        return DEFAULT_FORMATS
    items = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    items = ["md" if p in ("markdown",) else "junit" if p == "xml" else p for p in items]
    bad = [p for p in items if p not in FORMATS]
    if bad:
        raise UsageError(f"unknown report format(s) {', '.join(bad)} (known: {', '.join(FORMATS)})")
    return tuple(dict.fromkeys(items))


def html_page(folder: ResultFolder, out_dir: Path, options: ReportOptions) -> tuple[str, int, int]:
    """(page, images shown, images left out)."""
    from sdeval.reports import html
    from sdeval.reports.thumbs import Thumbnailer

    thumbs = Thumbnailer(out_dir, options.assets_dir)
    if folder.kind == "gate":
        ctx = html.gate_context(folder, thumbs, options.max_images, options.report_url)
        template = "gate.html.j2"
    elif folder.kind == "eval":
        ctx = html.eval_context(folder, thumbs, options.max_images, options.report_url)
        template = "eval.html.j2"
    else:
        from sdeval.reports.compare_page import compare_context

        ctx = compare_context(folder, thumbs, options.max_images, options.report_url)
        template = "compare.html.j2"
    ctx.setdefault("filter_values", [v for v, _ in ctx.get("counts", [])] or ctx.get("decisions", []))
    return html.render_html(template, ctx), int(ctx.get("shown", len(ctx.get("images", [])))), int(ctx.get("left_out", 0))


def csv_table(folder: ResultFolder) -> bytes:
    """Every image (gate, eval: worst first, as the page orders them) or every decision (compare)."""
    from sdeval.reports.html import worst_first
    from sdeval.results.files import csv_bytes

    if folder.kind == "compare":
        rows = list((folder.compare or {}).get("metrics") or [])
        cols = list(dict.fromkeys(k for r in rows for k in r))
        return csv_bytes(rows, cols)
    s = folder.summary
    metrics = list((s.get("metrics") or {}).keys())
    head = ["path", "verdict", "reasons"] if folder.kind == "gate" else ["path"]
    cols = head + ["prompt", "seed", "width", "height", *metrics, "error", "warnings"]
    rows = worst_first(folder.rows) if folder.kind == "gate" else folder.rows
    return csv_bytes(rows, cols)


def render(path: str | Path, options: ReportOptions = ReportOptions(),
           step_summary: Path | None = None) -> RenderedReport:
    """Write the asked formats for the result folder ``path``; returns the files and the annotations.
    ``step_summary``: a GitHub job-summary file to append the Markdown summary to (kept under 1 MiB)."""
    from sdeval.reports.junit import junit_xml
    from sdeval.reports.markdown import markdown

    t0 = time.perf_counter()
    folder = load_folder(path)
    out_dir = Path(options.out_dir) if options.out_dir is not None else folder.path
    files: dict[Path, bytes] = {}
    written: dict[str, Path] = {}
    md_text = None
    shown = left_out = 0
    for fmt in options.formats:
        target = out_dir / FILE_NAMES[fmt]
        if fmt == "html":
            page, shown, left_out = html_page(folder, out_dir, options)
            files[target] = page.encode("utf-8")
        elif fmt == "junit":
            files[target] = junit_xml(folder)
        elif fmt == "md":
            md_text = markdown(folder, options.report_url)
            files[target] = md_text.encode("utf-8")
        elif fmt == "csv":
            files[target] = csv_table(folder)
        written[fmt] = target
    if options.human_form:
        if folder.kind != "compare":
            raise UsageError("--human-form needs a compare result folder (pairs of images)")
        from sdeval.reports.human import human_files

        human = human_files(folder, out_dir)
        files.update(human)
        written["human"] = next(p for p in human if p.name == "index.html")
    try:
        atomic_write_many(files)
    except OSError as exc:
        raise OutputError(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from exc
    cut = False
    if step_summary is not None:
        from sdeval.reports.github import append_step_summary
        from sdeval.reports.markdown import markdown

        try:
            cut = append_step_summary(Path(step_summary), md_text or markdown(folder, options.report_url))
        except OSError as exc:
            raise OutputError(f"cannot append to the job summary {step_summary}: {exc.strerror or exc}") from exc
    return RenderedReport(files=written, markdown=md_text, annotations=annotations(folder),
                          seconds=time.perf_counter() - t0, shown=shown, left_out=left_out, step_summary_cut=cut)
