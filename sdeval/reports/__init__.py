"""Render a result folder: HTML (jinja2 templates), JUnit XML, Markdown job summary, CSV, plots.

Reports read the files a run wrote (never live objects), so ``sdeval report DIR`` re-renders any
old run and every format comes from the same JSON.
"""

from sdeval.reports.render import (DEFAULT_FORMATS, FORMATS, RenderedReport, ReportOptions, parse_formats,
                                   render)

__all__ = ["DEFAULT_FORMATS", "FORMATS", "RenderedReport", "ReportOptions", "parse_formats", "render"]
