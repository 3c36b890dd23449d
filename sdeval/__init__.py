"""sdeval: evaluate text-to-image outputs and act on the result.

The API (``sdeval.gate``, ``sdeval.evaluate``, ``sdeval.load_policy``, ``sdeval.compare``) is imported lazily so
that ``import sdeval`` and ``sdeval --help`` never pull in torch, pandas or onnxruntime.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["gate", "evaluate", "load_policy", "GateResult", "RunOptions", "eval_set", "build_stats",
           "EvalResult", "compare", "CompareResult", "CompareSettings", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("gate", "evaluate", "load_policy", "GateResult"):
        from sdeval import api

        return getattr(api, name)
    if name in ("eval_set", "build_stats", "EvalResult"):
        from sdeval.evaluate import set_eval as evaluation

        return getattr(evaluation, name)
    if name in ("compare", "CompareSettings"):
        # sdeval.compare is also the package (callable, see sdeval/compare/__init__.py)
        from sdeval import api

        return getattr(api, name)
    if name == "CompareResult":
        from sdeval.compare.result import CompareResult

        return CompareResult
    if name == "RunOptions":
        from sdeval.pipeline.run import RunOptions

        return RunOptions
    raise AttributeError(name)
