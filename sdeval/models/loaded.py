"""The process-wide memo of loaded models: each (kind, key) is loaded once, by one thread.

Every backbone (CLIP, Inception, LPIPS, open_nsfw, the aesthetic head) goes through
:func:`load_once`, so a model is never loaded twice in one process, tests and benchmarks see what
is loaded in one place, and :func:`clear` frees them all (GPU memory between runs).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Hashable

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, Hashable], Any] = {}
_KEY_LOCKS: dict[tuple[str, Hashable], threading.Lock] = {}


def load_once(kind: str, key: Hashable, loader: Callable[[], Any]) -> Any:
    """The model memoised under ``(kind, key)``, calling ``loader()`` on first use only."""
    full = (kind, key)
    with _LOCK:
        if full in _LOADED:
            return _LOADED[full]
        key_lock = _KEY_LOCKS.setdefault(full, threading.Lock())
    with key_lock:  # a slow load of one model does not block loads of others
        with _LOCK:
            if full in _LOADED:
                return _LOADED[full]
        value = loader()
        with _LOCK:
            _LOADED[full] = value
            _KEY_LOCKS.pop(full, None)
        return value


def loaded(kind: str | None = None) -> list[Any]:
    """The models loaded so far (of one kind, or all)."""
    with _LOCK:
        return [v for (k, _), v in _LOADED.items() if kind is None or k == kind]


def clear(kind: str | None = None) -> None:
    """Forget loaded models (of one kind, or all)."""
    with _LOCK:
        for full in [f for f in _LOADED if kind is None or f[0] == kind]:
            del _LOADED[full]
