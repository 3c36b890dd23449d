"""Arms: what each side of a comparison is, and where its images are.

An arm is a folder, glob, image file or manifest (named after it, or ``NAME=PATH``), or one value of
a metadata field of a single input (``--arms-by model``: the X/Y-plot case of several checkpoints
generated into one folder). Each image also gets its path relative to its arm's input, which is
the pairing key when prompt or seed are unknown.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from sdeval.core.errors import UsageError
from sdeval.inputs.manifest import MANIFEST_SUFFIXES
from sdeval.inputs.record import InputItem


@dataclass(frozen=True)
class ArmInput:
    """One arm as named on the command line (before discovery)."""

    name: str
    path: str


@dataclass(frozen=True)
class DiscoveredArm:
    """An input after discovery: its items, each item's relative path, what discovery skipped."""

    name: str
    path: str
    items: tuple[InputItem, ...]
    relpaths: tuple[str, ...]
    skipped: Mapping[str, int]
    manifests: tuple[str, ...]


def arm_name(path: str) -> str:
    """The name an input gives its arm: a folder's or file's name without suffix, a glob's fixed part."""
    raw = path.rstrip("/\\") or path
    if glob.has_magic(raw):
        raw = _glob_root(raw).rstrip("/\\") or raw
    p = Path(raw)
    if p.is_file():
        return p.stem or p.name
    return p.name or str(p)


def parse_arm(text: str) -> ArmInput:
    """``NAME=PATH`` from ``--arm``."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise UsageError(f"--arm {text!r}: expected NAME=PATH")
    return ArmInput(name.strip(), path.strip())


def arm_inputs(paths: Sequence[str], named: Sequence[str | ArmInput] = ()) -> list[ArmInput]:
    """Positional inputs (named after themselves) then ``--arm NAME=PATH``; names must be unique."""
    arms = [ArmInput(arm_name(p), p) for p in paths]
    arms += [a if isinstance(a, ArmInput) else parse_arm(a) for a in named]
    seen: dict[str, str] = {}
    for a in arms:
        if a.name in seen:
            raise UsageError(f"two arms are named '{a.name}' ({seen[a.name]} and {a.path}): name them with "
                             f"--arm NAME=PATH")
        seen[a.name] = a.path
    return arms


def discover_arm(arm: ArmInput) -> DiscoveredArm:
    """The arm's images (discovery's rules) and their paths relative to the input."""
    from sdeval.inputs.discovery import discover

    found = discover([arm.path])
    root = _root_of(arm.path)
    rel = tuple(_relative(item.path, root) for item in found.items)
    return DiscoveredArm(arm.name, arm.path, found.items, rel, dict(found.skipped), tuple(found.manifests))


def _glob_root(pattern: str) -> str:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def _root_of(path: str) -> Path:
    p = Path(path)
    if glob.has_magic(path):
        return Path(_glob_root(path))
    if p.is_dir():
        return p
    if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
        return p.parent
    return p.parent


def _relative(path: str, root: Path) -> str:
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    except ValueError:  # another drive (Windows)
        rel = Path(path).name
    if rel.startswith(".."):
        rel = Path(path).name
    return Path(rel).as_posix()


#: row columns an arm can be split by besides any metadata column a row holds
def split_value(value: Any) -> str | None:
    """An arm name from a field's value (7.0 -> "7"); None when the image has no value."""
    if value is None or value == "":
        return None
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def split_rows_by(rows: Sequence[Mapping[str, Any]], field_name: str) -> tuple[dict[str, list[int]], list[int]]:
    """({arm name: row indices in first-appearance order}, indices of rows without a value)."""
    if rows and not any(field_name in r for r in rows):
        fields = sorted(k for k in rows[0] if k not in ("path", "sha256", "warnings", "error", "missing"))
        raise UsageError(f"--arms-by {field_name!r}: the images have no such field (fields: {', '.join(fields)})")
    arms: dict[str, list[int]] = {}
    missing: list[int] = []
    for i, r in enumerate(rows):
        name = split_value(r.get(field_name))
        if name is None:
            missing.append(i)
        else:
            arms.setdefault(name, []).append(i)
    return arms, missing


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def folder_name(index: int, name: str) -> str:
    """A file-system-safe, unique folder name for an arm's files in the result folder."""
    slug = _UNSAFE.sub("_", name).strip("._") or "arm"
    return f"{index:02d}-{slug[:60]}"
