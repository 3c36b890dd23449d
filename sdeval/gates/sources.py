"""Where a gate policy comes from; first found wins as the base (CLI flags then override keys):
``--policy FILE|PRESET`` → ``./sdeval.toml`` (its ``[gate]`` table) → ``./pyproject.toml``
(``[tool.sdeval.gate]``) → the ``default`` preset.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from sdeval.core.config import TomlSource, file_table, project_table
from sdeval.core.errors import PolicyError


def preset_names() -> list[str]:
    files = resources.files("sdeval.gates").joinpath("presets")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> TomlSource:
    res = resources.files("sdeval.gates").joinpath("presets", f"{name}.toml")
    text = res.read_text(encoding="utf-8")
    return TomlSource(tomllib.loads(text), name=f"preset '{name}'", text=text)


def policy_source(policy: str | None, cwd: Path | None = None) -> TomlSource:
    """The base policy table per the order in the module docstring."""
    cwd = cwd or Path.cwd()
    if policy:
        path = Path(policy)
        if not path.exists() and "/" not in policy and not policy.endswith(".toml"):
            if policy in preset_names():
                return load_preset(policy)
            raise PolicyError(f"no policy file or preset named {policy!r} "
                              f"(presets: {', '.join(preset_names())})")
        return file_table(path, "gate")
    return project_table("gate", cwd) or load_preset("default")
