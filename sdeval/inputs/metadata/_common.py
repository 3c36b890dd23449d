"""Small helpers shared by the metadata readers: lenient type coercion and bounded JSON.

Metadata text is untrusted and written by many tools with loose typing (ComfyUI accepts the seed
``"777"`` and ``778.0``; Fooocus writes the seed as a string), so every reader coerces instead of
trusting types, and never raises.
"""

from __future__ import annotations

import json
import math
from typing import Any


def as_int(value: Any) -> int | None:
    """An int from an int, an integral float or a decimal string; None otherwise (bools too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            return int(number) if math.isfinite(number) and number.is_integer() else None
    return None


def as_float(value: Any) -> float | None:
    """A finite float from a number or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_str(value: Any) -> str | None:
    """The value when it is a string, else None (numbers are not names or prompts)."""
    return value if isinstance(value, str) else None


def load_json(text: str, what: str, max_bytes: int | None = None) -> tuple[Any, str | None]:
    """Parse JSON text, or return ``(None, warning)``: too big, malformed or too deeply nested.

    The size check comes first so a hostile chunk costs no parse time (DESIGN: JSON from PNG
    chunks is size-limited).
    """
    if max_bytes is not None:
        size = len(text) if len(text) > max_bytes else len(text.encode("utf-8", "replace"))
        if size > max_bytes:
            return None, (f"{what}: JSON is {size} bytes, over the {max_bytes}-byte limit; "
                          "not parsed")
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:
        return None, f"{what}: malformed JSON ({type(exc).__name__}: {str(exc)[:120]})"


def dedupe(items: list[str]) -> tuple[str, ...]:
    """Keep the first of each repeated warning, in order."""
    return tuple(dict.fromkeys(items))
