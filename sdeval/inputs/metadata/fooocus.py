"""Fooocus: ``parameters`` holding JSON (scheme ``fooocus``) or A1111 text (scheme ``a1111``).

The scheme sits in the ``fooocus_scheme`` PNG chunk, or EXIF MakerNote (0x927C) in JPEG/WebP where
the text itself is in IFD0 tag 0x9286. Fooocus writes the seed and the resolution as strings
(``"1234"``, ``"(1152, 896)"``), so values are coerced.
"""

from __future__ import annotations

import re
from typing import Any

from sdeval.inputs.metadata._common import as_float, as_int, as_str, load_json
from sdeval.inputs.metadata.a1111 import parse_a1111
from sdeval.inputs.metadata.types import GenerationMetadata

RE_RESOLUTION = re.compile(r"(\d+)\D+(\d+)")


def _resolution(value: Any) -> tuple[int | None, int | None]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return as_int(value[0]), as_int(value[1])
    if isinstance(value, str):
        match = RE_RESOLUTION.search(value)
        if match:
            return int(match.group(1)), int(match.group(2))
    return None, None


def parse_fooocus_json(data: Any) -> GenerationMetadata:
    """The parsed Fooocus JSON object; keys are matched loosely (``Guidance Scale`` too)."""
    if not isinstance(data, dict):
        return GenerationMetadata(source="none",
                                  warnings=("fooocus: parameters JSON is not an object",))
    d = {str(k).strip().lower().replace(" ", "_"): v for k, v in data.items()}
    width, height = _resolution(d.get("resolution"))
    return GenerationMetadata(
        source="fooocus",
        prompt=as_str(d.get("prompt")),
        negative_prompt=as_str(d.get("negative_prompt")),
        seed=as_int(d.get("seed")),
        width=width,
        height=height,
        output_width=width,
        output_height=height,
        steps=as_int(d.get("steps")),
        cfg=as_float(d.get("guidance_scale")),
        sampler=as_str(d.get("sampler")),
        scheduler=as_str(d.get("scheduler")),
        model=as_str(d.get("base_model")),
        model_hash=as_str(d.get("base_model_hash")),
    )


def parse_fooocus(text: str, scheme: str | None = None, *, max_json_bytes: int | None = None
                  ) -> GenerationMetadata:
    """Fooocus ``parameters`` text: JSON unless the scheme says ``a1111`` or it is not JSON."""
    scheme = (scheme or "").strip().lower()
    if scheme == "a1111" or not text.lstrip().startswith("{"):
        return parse_a1111(text, source="fooocus")
    data, problem = load_json(text, "fooocus 'parameters'", max_json_bytes)
    if problem is not None:
        return GenerationMetadata(source="none", warnings=(problem,))
    return parse_fooocus_json(data)
