"""TOML configuration with line numbers for errors: a parsed table and where it came from.

Which files a command reads, and in what order, is that command's business (the gate's is
:mod:`sdeval.gates.sources`).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from sdeval.core.errors import PolicyError


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


def dig(data: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur if isinstance(cur, dict) else None


def file_table(path: Path, section: str) -> TomlSource:
    """An explicitly named file: its ``[section]`` or ``[tool.sdeval.section]``, else the whole file."""
    data, text = read_toml(path)
    for dotted in (section, f"tool.sdeval.{section}"):
        table = dig(data, dotted)
        if table is not None:
            return TomlSource(table, name=str(path), text=text, table=dotted)
    return TomlSource(data, name=str(path), text=text)


def project_table(section: str, cwd: Path | None = None) -> TomlSource | None:
    """The project's settings of one command: ``[section]`` of ./sdeval.toml, else
    ``[tool.sdeval.section]`` of ./pyproject.toml; None when neither file holds the table."""
    cwd = cwd or Path.cwd()
    for name, dotted in (("sdeval.toml", section), ("pyproject.toml", f"tool.sdeval.{section}")):
        path = cwd / name
        if path.is_file():
            data, text = read_toml(path)
            table = dig(data, dotted)
            if table is not None:
                return TomlSource(table, name=str(path), text=text, table=dotted)
    return None
