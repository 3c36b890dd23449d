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

from sdeval.core.errors import OutputError
from sdeval.core.io import (atomic_write_bytes, atomic_write_many, check_writable_dir, json_bytes, jsonable,
                            jsonl_bytes, safe_text)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: a spreadsheet cell holds at most 32,767 characters (Excel); longer text (a 2 MB "prompt" from a
#: hostile file) is cut in the CSV, with a mark saying so; results.jsonl keeps it whole
MAX_CELL_CHARS = 32767
_CUT = "…[cut; whole value in results.jsonl]"


def guard_cell(value: Any) -> Any:
    """CSV formula-injection guard (OWASP): prefix ' to text a spreadsheet would evaluate."""
    if isinstance(value, str):
        value = safe_text(value)
        if value.startswith(_FORMULA_START) or value.lstrip().startswith(_FORMULA_START):
            value = "'" + value
        if len(value) > MAX_CELL_CHARS:
            value = value[: MAX_CELL_CHARS - len(_CUT)] + _CUT
    return value


def csv_bytes(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([guard_cell(c) for c in columns])
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return buf.getvalue().encode("utf-8")


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    atomic_write_bytes(path, csv_bytes(rows, columns))


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
        if any(isinstance(x, Mapping) for x in v):  # records (LoRAs...): one JSON list
            return guard_cell(json.dumps(jsonable(list(v)), ensure_ascii=False, sort_keys=True))
        return guard_cell(" | ".join(str(x) for x in v))
    if isinstance(v, Mapping):
        return guard_cell(json.dumps(jsonable(v), ensure_ascii=False, sort_keys=True)) if v else ""
    return guard_cell(str(v))


def write_result_files(out_dir: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                       summary: Mapping[str, Any], schema_version: int) -> dict[str, Any]:
    """A command's result folder: results.jsonl, results.csv, summary.json, and the marker that keeps
    discovery out of it. Returns the summary as written (with ``out_dir``)."""
    from sdeval.inputs.discovery import RESULT_MARKER

    written = {**summary, "out_dir": str(out_dir)}
    schema = {"schema_version": schema_version}
    files = {
        out_dir / "results.jsonl": jsonl_bytes({**schema, **{c: r.get(c) for c in columns}} for r in rows),
        out_dir / "results.csv": csv_bytes(rows, columns),
        out_dir / "summary.json": json_bytes(written),
    }
    marker = out_dir / RESULT_MARKER
    if not marker.exists():
        files[marker] = b"sdeval result folder: sdeval does not evaluate the files below this folder\n"
    try:
        atomic_write_many(files)
    except OSError as exc:
        raise OutputError(f"cannot write the result folder {out_dir}: {exc.strerror or exc}; "
                          "the previous result files (if any) are unchanged") from exc
    return written


def check_result_folder(out_dir: Path) -> None:
    """Fail before any work when ``out_dir`` cannot hold a result folder (exit 2, naming it)."""
    try:
        check_writable_dir(out_dir)
    except OSError as exc:
        raise OutputError(f"cannot write the result folder {out_dir}: {exc.strerror or exc}") from exc
