"""CSV / JSONL manifests: one row per image with values that override embedded metadata.

Columns: ``path`` (required; relative paths are relative to the manifest's folder), ``prompt``,
``negative`` (or ``negative_prompt``), ``seed``, ``width``, ``height``, ``model``, ``group``.
Unknown columns are an error naming them, so a typo does not silently drop data.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

from sdeval.core.errors import InputError
from sdeval.inputs.metadata.types import GenerationMetadata
from sdeval.inputs.record import InputItem

MANIFEST_SUFFIXES = frozenset({".csv", ".jsonl"})
COLUMNS = ("path", "prompt", "negative", "negative_prompt", "seed", "width", "height", "model", "group")


def read_manifest(path: Path) -> list[InputItem]:
    rows = _read_csv(path) if path.suffix.lower() == ".csv" else _read_jsonl(path)
    items = []
    for line, row in rows:
        items.append(_item(path, line, row))
    return items


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            _check_columns(path, reader.fieldnames or [])
            for row in reader:
                yield reader.line_num, {k: v for k, v in row.items() if v not in (None, "")}
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: manifest is not UTF-8 text ({exc})") from exc


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{line_no}: invalid JSON: {exc.msg}") from exc
            if not isinstance(row, dict):
                raise InputError(f"{path}:{line_no}: each line must be a JSON object")
            _check_columns(path, list(row), line_no)
            yield line_no, {k: v for k, v in row.items() if v not in (None, "")}


def _check_columns(path: Path, names: list[str], line: int | None = None) -> None:
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        where = f"{path}:{line}" if line else str(path)
        raise InputError(f"{where}: unknown manifest column(s) {', '.join(map(repr, unknown))}; "
                         f"expected {', '.join(COLUMNS)}")
    if "path" not in names:
        raise InputError(f"{path}: manifest has no 'path' column")


def _item(manifest: Path, line: int, row: dict[str, Any]) -> InputItem:
    where = f"{manifest}:{line}"
    if "path" not in row:
        raise InputError(f"{where}: row has no path")
    image = Path(str(row["path"]))
    if not image.is_absolute():
        image = manifest.parent / image
    overrides = GenerationMetadata(
        source="manifest",
        prompt=_opt_str(row.get("prompt")),
        negative_prompt=_opt_str(row.get("negative", row.get("negative_prompt"))),
        seed=_opt_int(row.get("seed"), "seed", where),
        width=_opt_int(row.get("width"), "width", where),
        height=_opt_int(row.get("height"), "height", where),
        model=_opt_str(row.get("model")),
    )
    return InputItem(path=str(image), overrides=overrides, group=_opt_str(row.get("group")))


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def _opt_int(v: Any, name: str, where: str) -> int | None:
    if v is None:
        return None
    try:
        return int(str(v).strip())
    except ValueError as exc:
        raise InputError(f"{where}: {name} must be an integer, got {v!r}") from exc
