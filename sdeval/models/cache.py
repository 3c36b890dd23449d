"""Where sdeval keeps downloaded weights and features, and whether it may use the network.

One cache root serves every run (``SDEVAL_CACHE_DIR``, else the platform's user cache dir) so
a nightly job, a CI step and an interactive run share downloads and features. Offline mode is
decided here once, because it must also reach huggingface_hub (which open_clip uses) *before*
that library is imported: huggingface_hub reads ``HF_HUB_OFFLINE`` at import time, and without
it a missing pretrained tag spends ~45 s in retries instead of failing at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from pathlib import Path

ENV_CACHE_DIR = "SDEVAL_CACHE_DIR"
ENV_OFFLINE = "SDEVAL_OFFLINE"
ENV_HF_OFFLINE = "HF_HUB_OFFLINE"
_TRUE = {"1", "true", "yes", "on"}

_offline_flag: bool | None = None
_hash_lock = threading.Lock()


def cache_dir() -> Path:
    """The cache root (not created here: listing models must not write anything)."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("sdeval", appauthor=False))


def models_dir() -> Path:
    """Where sdeval's own downloads (not open_clip's hub files) live."""
    return cache_dir() / "models"


def features_db_path() -> Path:
    return cache_dir() / "features.sqlite"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def is_offline(flag: bool | None = None) -> bool:
    """True when no network access is allowed: an explicit flag, ``set_offline``, or the env vars."""
    if flag is not None:
        return bool(flag)
    if _offline_flag is not None:
        return _offline_flag
    return _env_true(ENV_OFFLINE) or _env_true(ENV_HF_OFFLINE)


def set_offline(on: bool = True) -> None:
    """Switch offline mode for this process (``--offline``).

    Also sets ``HF_HUB_OFFLINE`` so that huggingface_hub, imported later by open_clip, makes no
    network attempt; if it was already imported its constant is patched too.
    """
    global _offline_flag
    _offline_flag = bool(on)
    if on:
        os.environ[ENV_HF_OFFLINE] = "1"
        hub_constants = sys.modules.get("huggingface_hub.constants")
        if hub_constants is not None:
            hub_constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


def reset_offline() -> None:
    """Forget ``set_offline`` (tests); the environment variables decide again."""
    global _offline_flag
    _offline_flag = None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _memo_path() -> Path:
    return cache_dir() / "weights-sha256.json"


def weights_sha256(path: Path) -> str:
    """sha256 of a weights file, memoised on disk by (real path, size, mtime).

    The feature cache key includes the weights hash, and hashing a 1.7 GB checkpoint on every
    run would cost seconds; the memo makes it a stat. Files in huggingface_hub's cache are blobs
    named by their sha256 already, so those cost nothing at all.
    """
    real = Path(os.path.realpath(path))
    name = real.name
    if len(name) == 64 and all(c in "0123456789abcdef" for c in name) and "blobs" in real.parts:
        return name
    st = real.stat()
    key = str(real)
    stamp = [st.st_size, st.st_mtime_ns]
    memo_file = _memo_path()
    with _hash_lock:
        memo = _read_memo(memo_file)
        hit = memo.get(key)
        if isinstance(hit, dict) and hit.get("stamp") == stamp and isinstance(hit.get("sha256"), str):
            return hit["sha256"]
    digest = sha256_file(real)
    with _hash_lock:
        memo = _read_memo(memo_file)
        memo[key] = {"stamp": stamp, "sha256": digest}
        try:
            atomic_write_text(memo_file, json.dumps(memo, indent=0, sort_keys=True))
        except OSError:  # a read-only cache only costs the memo
            pass
    return digest


def _read_memo(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def atomic_write_text(path: Path, text: str) -> None:
    """Temp file + rename (one implementation for the package: sdeval.results.files)."""
    from sdeval.core.io import atomic_write_text as _write

    _write(path, text)
