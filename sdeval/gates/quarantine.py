"""``block``: set an image aside for review and log why, without losing or altering it.

A blocked image is copied into the quarantine folder (moved only when asked: inputs are never
modified otherwise, DESIGN.md) and one JSON line is appended to ``audit.jsonl`` there: image,
sha256, verdict, reasons, scores, destination, time. The log is append-only so one quarantine
folder can serve many runs; each line is written with a single ``write`` on an ``O_APPEND``
descriptor and fsynced, so concurrent runs and crashes leave whole lines.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdeval.core.errors import InputError
from sdeval.core.io import sha256_file

AUDIT_LOG = "audit.jsonl"


@dataclass(frozen=True)
class QuarantineRecord:
    """Where a blocked image went; ``moved`` when the original left its folder."""

    image: str
    sha256: str | None
    dest: str
    moved: bool
    audit_log: str
    time: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.dest, "moved": self.moved, "audit_log": self.audit_log, "time": self.time}


def _destination(folder: Path, src: Path, sha256: str | None) -> Path:
    """``folder/name``; a different file already there keeps its name and ours gets ``-<sha8>``."""
    dest = folder / src.name
    if not dest.exists() or (sha256 is not None and sha256_file(dest) == sha256):
        return dest
    tag = (sha256 or sha256_file(src))[:8]
    return folder / f"{src.stem}-{tag}{src.suffix}"


def _copy_atomic(src: Path, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line durably (one write on an O_APPEND descriptor, then fsync)."""
    from sdeval.core.io import to_json

    path.parent.mkdir(parents=True, exist_ok=True)
    data = (to_json(record, indent=None) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def quarantine(path: str, folder: Path, *, sha256: str | None, verdict: str, reasons: list[str],
               scores: Mapping[str, Any], move: bool = False, run: str | None = None,
               source: str | None = None) -> QuarantineRecord:
    """Copy (or move) ``path`` into ``folder`` and append its audit line.

    ``sha256`` is what the image was evaluated as: a file that changed since is refused rather
    than quarantined under the wrong record. ``source`` names the original input when ``path`` is
    a regeneration attempt.
    """
    src = Path(path)
    if not src.is_file():
        raise InputError(f"cannot quarantine {path}: the file is gone")
    if sha256 is not None and sha256_file(src) != sha256:
        raise InputError(f"cannot quarantine {path}: it changed since it was evaluated")
    folder.mkdir(parents=True, exist_ok=True)
    dest = _destination(folder, src, sha256)
    if dest.exists():
        moved = False  # the same bytes are already there (a resumed run): nothing to copy
        if move:
            src.unlink()
            moved = True
    elif move:
        try:
            os.replace(src, dest)  # same file system: atomic
        except OSError:
            _copy_atomic(src, dest)
            src.unlink()
        moved = True
    else:
        _copy_atomic(src, dest)
        moved = False
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    audit = folder / AUDIT_LOG
    append_jsonl(audit, {"time": now, "image": str(src), "sha256": sha256, "verdict": verdict,
                         "reasons": list(reasons), "scores": dict(scores), "quarantined_to": str(dest),
                         "moved": moved, "source": source, "run": run})
    return QuarantineRecord(image=str(src), sha256=sha256, dest=str(dest), moved=moved, audit_log=str(audit),
                            time=now)
