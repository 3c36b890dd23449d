"""The sha256 of weights files: one memo for the package, keyed by (real path, size, mtime).

The feature cache key and every protocol carry the weights' sha256, and a run that checks a local
override against the registry needs it too; hashing a 1.7 GB checkpoint on every run would cost
seconds, so the digest is remembered on disk (``weights-sha256.json`` in the cache dir) and a
later run pays a stat. A file that changes (size or mtime) is hashed again. Files in
huggingface_hub's cache are blobs named by their sha256 already and cost nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from sdeval.core.io import atomic_write_text, sha256_file
from sdeval.models.cache import cache_dir

MEMO_FILE = "weights-sha256.json"
#: what a directory's digest covers (open_clip's local-dir: config + checkpoint)
_DIR_SUFFIXES = (".json", ".safetensors", ".bin", ".pth", ".pt")
_lock = threading.Lock()


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a weights file, or for a directory of its config and checkpoint files (memoised)."""
    p = Path(path)
    if p.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p.iterdir()):
            if child.is_file() and child.suffix in _DIR_SUFFIXES:
                digest.update(child.name.encode() + b"\0" + _file_sha256(child).encode() + b"\n")
        return digest.hexdigest()
    return _file_sha256(p)


def _is_hub_blob(real: Path) -> bool:
    name = real.name
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name) and "blobs" in real.parts


def _file_sha256(path: Path) -> str:
    real = Path(os.path.realpath(path))
    if _is_hub_blob(real):
        return real.name
    st = real.stat()
    key, stamp = str(real), [st.st_size, st.st_mtime_ns]
    memo_file = cache_dir() / MEMO_FILE
    with _lock:
        hit = _read(memo_file).get(key)
    if isinstance(hit, dict) and hit.get("stamp") == stamp and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    digest = sha256_file(real)
    with _lock:
        memo = _read(memo_file)
        memo[key] = {"stamp": stamp, "sha256": digest}
        try:
            atomic_write_text(memo_file, json.dumps(memo, indent=0, sort_keys=True))
        except OSError:  # a read-only cache only costs the memo
            pass
    return digest


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
