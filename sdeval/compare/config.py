"""``sdeval compare`` settings from TOML: ``--config FILE`` → ``./sdeval.toml [compare]`` →
``./pyproject.toml [tool.sdeval.compare]``; command-line flags override them key by key.

Unknown keys are an error naming the key and its line (as the gate's policy): a typo such as
``fail_on_regresion = true`` must not silently turn the CI check off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from sdeval.core.config import TomlSource, file_table, project_table

#: key -> accepted Python types (TOML values)
KEYS: dict[str, tuple[type, ...]] = {
    "metrics": (str, list),
    "baseline": (str,),
    "arms_by": (str,),
    "pair_by": (str,),
    "ref": (str,),
    "ref_stats": (str,),
    "policy": (str,),
    "margin": (dict,),
    "alpha": (float, int),
    "fail_on_regression": (bool,),
    "resamples": (int,),
    "permutations": (int,),
    "seed": (int,),
    "out": (str,),
}


@dataclass(frozen=True)
class CompareConfig:
    values: Mapping[str, Any]
    source: str | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def config_source(path: str | None = None, cwd: Path | None = None) -> TomlSource | None:
    """The compare table per the module docstring (None when no file has one)."""
    return file_table(Path(path), "compare") if path else project_table("compare", cwd)


def load_config(path: str | None = None, cwd: Path | None = None) -> CompareConfig:
    """Checked settings (PolicyError, exit 2, on an unknown key or a wrong type)."""
    src = config_source(path, cwd)
    if src is None:
        return CompareConfig({})
    return CompareConfig(check(src), src.name)


def check(src: TomlSource) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in src.data.items():
        if key not in KEYS:
            raise src.error(f"unknown key '{key}' in [{src.table or 'compare'}] (known: {', '.join(KEYS)})", key)
        types = KEYS[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            names = " or ".join("table" if t is dict else "list" if t is list else t.__name__ for t in types)
            raise src.error(f"'{key}' must be a {names}, got {type(value).__name__}", key)
        if key == "margin":
            for metric, x in value.items():
                if isinstance(x, bool) or not isinstance(x, (int, float)) or x < 0:
                    raise src.error(f"margin.{metric} must be a number >= 0, got {x!r}", metric)
            value = {m: float(x) for m, x in value.items()}
        if key == "metrics" and isinstance(value, list):
            if not all(isinstance(x, str) for x in value):
                raise src.error("'metrics' must be a list of metric names", key)
            value = ",".join(value)
        if key == "pair_by" and value not in ("key", "filename", "none"):
            raise src.error(f"pair_by must be key, filename or none, got {value!r}", key)
        if key == "alpha" and not 0 < float(value) < 1:
            raise src.error(f"alpha must be between 0 and 1, got {value!r}", key)
        out[key] = value
    return out
