"""Result files: JSONL, CSV, JSON — always written atomically (temp file + rename).

Text from image metadata is untrusted: CSV string cells that a spreadsheet would run as a
formula are prefixed with ``'``; file names that are not valid UTF-8 are written with
backslash escapes rather than failing the write.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def safe_text(s: str) -> str:
    """A str that encodes to UTF-8: lone surrogates (undecodable file names) become escapes."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def jsonable(value: Any) -> Any:
    """Plain JSON values: NaN → null, numpy scalars → Python, tuples → lists, safe strings."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {safe_text(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return jsonable(value.item())
    return value


def to_json(value: Any, indent: int | None = 2) -> str:
    return json.dumps(jsonable(value), indent=indent, ensure_ascii=False, allow_nan=False)


def write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, to_json(value) + "\n")


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    atomic_write_text(path, "".join(to_json(r, indent=None) + "\n" for r in rows))


def guard_cell(value: Any) -> Any:
    """CSV formula-injection guard (OWASP): prefix ' to strings a spreadsheet would evaluate."""
    if isinstance(value, str):
        value = safe_text(value)
        if value.startswith(_FORMULA_START):
            return "'" + value
    return value


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([guard_cell(_csv_value(row.get(c))) for c in columns])
    atomic_write_text(path, buf.getvalue())


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    if isinstance(v, (list, tuple)):
        return " | ".join(str(x) for x in v)
    if isinstance(v, Mapping):
        return json.dumps(jsonable(v), ensure_ascii=False, sort_keys=True) if v else ""
    return v


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
