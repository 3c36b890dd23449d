"""A result folder's files: results.jsonl, results.csv, summary.json — written atomically.

Text from image metadata is untrusted (REFERENCE.md, CSV injection): a text cell that a spreadsheet
would run as a formula (``= + - @ \\t \\r`` first, after any leading white space) is prefixed with
``'``; lines end in CRLF (RFC 4180) so that the csv module quotes every cell holding a ``\\r`` or a
``\\n`` and no cell can start a row of its own; numbers stay numbers (a negative score is not a
formula); file names that are not valid UTF-8 are written with backslash escapes.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from sdeval.core.io import atomic_write_text, jsonable, safe_text, write_json, write_jsonl

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def guard_cell(value: Any) -> Any:
    """CSV formula-injection guard (OWASP): prefix ' to text a spreadsheet would evaluate."""
    if isinstance(value, str):
        value = safe_text(value)
        if value.startswith(_FORMULA_START) or value.lstrip().startswith(_FORMULA_START):
            return "'" + value
    return value


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([guard_cell(c) for c in columns])
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    atomic_write_text(path, buf.getvalue())


def _csv_cell(v: Any) -> Any:
    """A cell: numbers as numbers, everything textual guarded."""
    if v is None:
        return ""
    if not isinstance(v, (str, bool)) and hasattr(v, "item") and callable(v.item):  # numpy scalar
        v = v.item()
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return "" if math.isnan(v) or math.isinf(v) else repr(v)
    if isinstance(v, int):
        return v
    if isinstance(v, (list, tuple)):
        return guard_cell(" | ".join(str(x) for x in v))
    if isinstance(v, Mapping):
        return guard_cell(json.dumps(jsonable(v), ensure_ascii=False, sort_keys=True)) if v else ""
    return guard_cell(str(v))


def write_result_files(out_dir: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                       summary: Mapping[str, Any], schema_version: int) -> dict[str, Any]:
    """A command's result folder: results.jsonl, results.csv, summary.json, and the marker that keeps
    discovery out of it. Returns the summary as written (with ``out_dir``)."""
    from sdeval.inputs.discovery import RESULT_MARKER

    out_dir.mkdir(parents=True, exist_ok=True)
    marker = out_dir / RESULT_MARKER
    if not marker.exists():
        marker.write_text("sdeval result folder: sdeval does not evaluate the files below this folder\n")
    schema = {"schema_version": schema_version}
    write_jsonl(out_dir / "results.jsonl", ({**schema, **{c: r.get(c) for c in columns}} for r in rows))
    write_csv(out_dir / "results.csv", rows, columns)
    written = {**summary, "out_dir": str(out_dir)}
    write_json(out_dir / "summary.json", written)
    return written
