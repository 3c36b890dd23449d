"""Comparing arms (models, checkpoints, LoRAs, settings): pairing, paired statistics, set-metric
differences, decisions (DESIGN.md, Compare).

``sdeval.compare(...)`` is the API (DESIGN.md). Python binds the name ``sdeval.compare`` to this
package as soon as any of its modules is imported, which would hide a function of that name; so the
package itself is callable and forwards to :func:`sdeval.compare.run.compare`.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from sdeval.compare.run import compare

        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
