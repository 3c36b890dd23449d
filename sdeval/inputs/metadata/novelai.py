"""NovelAI: ``Software="NovelAI"``, ``Description`` = prompt, ``Comment`` = JSON settings.

``Description`` is what the user typed; ``Comment.prompt`` (when present) is the same text and is
only used as a fallback. ``uc`` ("undesired content") is the negative prompt.
"""

from __future__ import annotations

from typing import Any

from sdeval.inputs.metadata._common import as_float, as_int, as_str, load_json
from sdeval.inputs.metadata.types import GenerationMetadata


def is_novelai(text: dict[str, str]) -> bool:
    """NovelAI marks its files with ``Software``; ``Source`` names the model."""
    return text.get("Software", "").strip().lower().startswith("novelai")


def parse_novelai(text: dict[str, str], *, max_json_bytes: int | None = None
                  ) -> GenerationMetadata:
    """Read the NovelAI chunks (``Description``, ``Comment``, ``Source``) from a text-chunk dict."""
    warnings: list[str] = []
    comment: Any = {}
    if "Comment" in text:
        comment, problem = load_json(text["Comment"], "novelai 'Comment'", max_json_bytes)
        if problem is not None:
            warnings.append(problem)
        if not isinstance(comment, dict):
            if problem is None:
                warnings.append("novelai: 'Comment' is not a JSON object")
            comment = {}
    prompt = text.get("Description") or as_str(comment.get("prompt"))
    return GenerationMetadata(
        source="novelai",
        prompt=prompt or None,
        negative_prompt=as_str(comment.get("uc")),
        seed=as_int(comment.get("seed")),
        width=as_int(comment.get("width")),
        height=as_int(comment.get("height")),
        output_width=as_int(comment.get("width")),
        output_height=as_int(comment.get("height")),
        steps=as_int(comment.get("steps")),
        cfg=as_float(comment.get("scale")),
        sampler=as_str(comment.get("sampler")),
        scheduler=as_str(comment.get("noise_schedule")),
        model=text.get("Source") or None,
        warnings=tuple(warnings),
    )
