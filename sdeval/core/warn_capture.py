"""Python warnings raised while one image is read become that image's row warnings.

Pillow warns (``UserWarning``: "Tag data larger than file", truncated EXIF, palette transparency…)
straight onto stderr, where in a batch of thousands nobody can tell which file it was about.
``warnings.catch_warnings`` is process-wide and not thread-safe, and images are decoded in a
thread pool, so one ``showwarning`` hook routes each thread's warnings to the collector that thread
opened with :func:`captured`; warnings of threads without one go where they went before.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator

_local = threading.local()
_lock = threading.Lock()
_fallback: Callable[..., None] | None = None


def _hook(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
          line: str | None = None) -> None:
    sink = getattr(_local, "sink", None)
    if sink is not None:
        if (text := f"{category.__name__}: {message}") not in sink:
            sink.append(text)
    elif _fallback is not None:
        _fallback(message, category, filename, lineno, file, line)


def install() -> None:
    """Put the hook in place (again, if something such as a test runner swapped it out)."""
    global _fallback
    with _lock:
        if warnings.showwarning is not _hook:
            _fallback = warnings.showwarning
            warnings.showwarning = _hook
            # every image's warning, not only the first one at each line of Pillow
            warnings.filterwarnings("always", category=UserWarning, module=r"PIL(\.|$)")


@contextmanager
def captured() -> Iterator[list[str]]:
    """Collect this thread's warnings (deduplicated, in order) while the block runs."""
    install()
    previous = getattr(_local, "sink", None)
    sink: list[str] = []
    _local.sink = sink
    try:
        yield sink
    finally:
        _local.sink = previous
