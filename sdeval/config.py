"""Where configuration comes from: TOML files, in a fixed order, with line numbers for errors.

Gate policy sources, first found wins as the base (CLI flags then override keys):
``--policy FILE|PRESET`` → ``./sdeval.toml`` (its ``[gate]`` table) → ``./pyproject.toml``
(``[tool.sdeval.gate]``) → the ``default`` preset.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from sdeval.errors import PolicyError


@dataclass(frozen=True)
class TomlSource:
    """A parsed TOML table plus where it came from, so errors can point at a file and line."""

    data: dict[str, Any]
    name: str
    text: str = ""
    #: the dotted table the data was taken from ("" = top level), e.g. "tool.sdeval.gate"
    table: str = ""

    def line_of(self, key: str) -> int | None:
        """Best-effort line number of ``key = ...`` or a ``[...key]`` header in the file."""
        if not self.text:
            return None
        k = re.escape(key)
        patterns = (re.compile(rf"""^\s*(?:["']?{k}["']?\s*=|\[+[^\]]*\b{k}\b[^\]]*\]+)"""),
                    re.compile(rf"""(?:^|[{{,\s])["']?{k}["']?\s*="""),
                    re.compile(rf"\b{k}\b"))
        lines = self.text.splitlines()
        for pat in patterns:  # a key at the start of a line first, then inline tables, then anywhere
            for i, line in enumerate(lines, start=1):
                if pat.search(line.split("#", 1)[0]):
                    return i
        return None

    def error(self, message: str, key: str | None = None) -> PolicyError:
        return PolicyError(message, source=self.name, key=key, line=self.line_of(key) if key else None)


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PolicyError(f"policy file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc}") from exc
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: invalid TOML: {exc}") from exc


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
        data, text = read_toml(path)
        for dotted in ("gate", "tool.sdeval.gate"):
            table = _dig(data, dotted)
            if table is not None:
                return TomlSource(table, name=str(path), text=text, table=dotted)
        return TomlSource(data, name=str(path), text=text)
    local = cwd / "sdeval.toml"
    if local.is_file():
        data, text = read_toml(local)
        return TomlSource(_dig(data, "gate") or {}, name=str(local), text=text, table="gate")
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        data, text = read_toml(pyproject)
        table = _dig(data, "tool.sdeval.gate")
        if table is not None:
            return TomlSource(table, name=str(pyproject), text=text, table="tool.sdeval.gate")
    return load_preset("default")


def _dig(data: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur if isinstance(cur, dict) else None
