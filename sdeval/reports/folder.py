"""A result folder as the reports read it: the JSON/JSONL/CSV files a run wrote, never live objects.

``sdeval report DIR`` re-renders any old run, so everything a report shows comes from these files:
``summary.json`` + ``results.jsonl`` (gate, eval) or ``compare.json`` (+ ``pairs.csv``, ``unpaired``,
per-arm rows) for a comparison.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdeval.core.errors import InputError

KINDS = ("gate", "eval", "compare")


@dataclass(frozen=True)
class ResultFolder:
    path: Path
    #: gate | eval | compare
    kind: str
    summary: dict[str, Any]
    #: results.jsonl rows (gate, eval; compare: every arm's rows with an ``arm`` key)
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: compare.json (compare only)
    compare: dict[str, Any] | None = None
    #: pairs.csv rows (compare only), values as text
    pairs: list[dict[str, str]] = field(default_factory=list)
    #: images that were not paired (compare only)
    unpaired: list[dict[str, Any]] = field(default_factory=list)
    #: arm name -> its rows in the order of its results.jsonl (compare only; pairs.csv indexes them)
    arm_rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a line that is not an object (a cut-off last line) is skipped."""
    rows: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    rows.append(obj)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    return rows


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as f:
            return [dict(r) for r in csv.DictReader(f)]
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def _arm_rows(path: Path, compare: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each arm's rows: the file compare.json names for it (``arms/NN-name/results.jsonl``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in compare.get("arms") or []:
        if not isinstance(entry, dict) or "name" not in entry:
            continue
        rel = entry.get("results")
        target = (path / str(rel)).resolve() if rel else None
        # only files inside the folder: compare.json is data, not a pointer to anywhere on disk
        if target is not None and target.is_file() and path.resolve() in target.parents:
            out[str(entry["name"])] = read_jsonl(target)
        else:
            out[str(entry["name"])] = []
    return out


def _unpaired(path: Path, compare: dict[str, Any]) -> list[dict[str, Any]]:
    for name in ("unpaired.jsonl", "unpaired.csv", "unpaired.json"):
        p = path / name
        if p.is_file():
            if name.endswith(".jsonl"):
                return read_jsonl(p)
            if name.endswith(".csv"):
                return [dict(r) for r in _read_csv(p)]
            data = _read_json(p)
            return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []
    listed = compare.get("unpaired")
    if isinstance(listed, list):
        return [r if isinstance(r, dict) else {"path": str(r)} for r in listed]
    return []


def load_folder(path: str | Path) -> ResultFolder:
    """Read a result folder (gate, eval or compare); InputError (exit 2) when it is none."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path} is not a folder (give the result folder of a gate, eval or compare run)")
    if (path / "compare.json").is_file():
        compare = _read_json(path / "compare.json")
        if not isinstance(compare, dict):
            raise InputError(f"{path / 'compare.json'} does not hold a comparison")
        pairs = _read_csv(path / "pairs.csv") if (path / "pairs.csv").is_file() else []
        arm_rows = _arm_rows(path, compare)
        rows = [{**r, "arm": name} for name, rs in arm_rows.items() for r in rs]
        return ResultFolder(path=path, kind="compare", summary=compare, rows=rows, compare=compare, pairs=pairs,
                            unpaired=_unpaired(path, compare), arm_rows=arm_rows)
    if not (path / "summary.json").is_file():
        raise InputError(f"{path} holds no summary.json or compare.json: not an sdeval result folder")
    summary = _read_json(path / "summary.json")
    if not isinstance(summary, dict):
        raise InputError(f"{path / 'summary.json'} is not a summary")
    kind = summary.get("command")
    if kind not in KINDS:
        raise InputError(f"{path / 'summary.json'} was written by an unknown command {kind!r}")
    rows = read_jsonl(path / "results.jsonl") if (path / "results.jsonl").is_file() else []
    return ResultFolder(path=path, kind=str(kind), summary=summary, rows=rows)
