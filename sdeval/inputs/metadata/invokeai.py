"""InvokeAI: 3.x+ ``invokeai_metadata`` JSON; 2.x ``sd-metadata`` JSON and ``Dream`` command line.

InvokeAI calls the sampling algorithm "scheduler" (``euler_a``, ``dpmpp_2m_k``); it is stored in
``sampler``, the field that means "which algorithm" everywhere else in sdeval. InvokeAI 2.x wrote
the negative prompt inside the prompt as ``[bracketed]`` text, which is split out here.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from sdeval.inputs.metadata._common import as_float, as_int, as_str
from sdeval.inputs.metadata.types import GenerationMetadata

RE_BRACKETED = re.compile(r"\[([^\[\]]*)\]")

#: Dream switches -> field; long spellings from InvokeAI 2.x's CLI.
DREAM_OPTIONS = {
    "-s": "steps", "--steps": "steps",
    "-S": "seed", "--seed": "seed",
    "-W": "width", "--width": "width",
    "-H": "height", "--height": "height",
    "-C": "cfg", "--cfg_scale": "cfg",
    "-A": "sampler", "--sampler": "sampler",
    "-m": "model", "--model": "model",
}


def split_negative(prompt: str) -> tuple[str, str | None]:
    """``"a cat [ugly, blurry]"`` -> ``("a cat", "ugly, blurry")`` (InvokeAI 2.x syntax)."""
    negatives = [m.strip() for m in RE_BRACKETED.findall(prompt) if m.strip()]
    if not negatives:
        return prompt.strip(), None
    positive = re.sub(r"\s{2,}", " ", RE_BRACKETED.sub(" ", prompt)).strip()
    return positive, ", ".join(negatives)


def _model_name(model: Any) -> tuple[str | None, str | None]:
    """InvokeAI 3 writes ``{model_name, base_model}``, 4+ ``{name, key, hash, base}``."""
    if isinstance(model, str):
        return model, None
    if isinstance(model, dict):
        name = as_str(model.get("name")) or as_str(model.get("model_name"))
        return name, as_str(model.get("hash"))
    return None, None


def parse_invokeai_metadata(data: Any) -> GenerationMetadata:
    """The parsed ``invokeai_metadata`` JSON object (InvokeAI 3.x and later)."""
    if not isinstance(data, dict):
        return GenerationMetadata(
            source="none", warnings=("invokeai: invokeai_metadata is not a JSON object",))
    model, model_hash = _model_name(data.get("model"))
    return GenerationMetadata(
        source="invokeai",
        prompt=as_str(data.get("positive_prompt")),
        negative_prompt=as_str(data.get("negative_prompt")),
        seed=as_int(data.get("seed")),
        width=as_int(data.get("width")),
        height=as_int(data.get("height")),
        # with hires fix (hrf_enabled) InvokeAI's width/height are still the final size: the
        # first pass is computed smaller (calculateHrfRes) and resized back to width x height
        output_width=as_int(data.get("width")),
        output_height=as_int(data.get("height")),
        steps=as_int(data.get("steps")),
        cfg=as_float(data.get("cfg_scale")),
        sampler=as_str(data.get("scheduler")),
        model=model,
        model_hash=model_hash,
    )


def _v2_prompt(value: Any) -> str | None:
    """2.x prompts are a string or a list of ``{prompt, weight}`` sub-prompts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [p.get("prompt") if isinstance(p, dict) else p for p in value]
        texts = [p for p in parts if isinstance(p, str)]
        return " ".join(texts) if texts else None
    return None


def parse_sd_metadata(data: Any) -> GenerationMetadata:
    """The parsed ``sd-metadata`` JSON object (InvokeAI 2.x)."""
    if not isinstance(data, dict):
        return GenerationMetadata(source="none",
                                  warnings=("invokeai: sd-metadata is not a JSON object",))
    image = data.get("image") if isinstance(data.get("image"), dict) else data
    prompt = _v2_prompt(image.get("prompt"))
    negative = None
    if prompt is not None:
        prompt, negative = split_negative(prompt)
    return GenerationMetadata(
        source="invokeai",
        prompt=prompt or None,
        negative_prompt=negative,
        seed=as_int(image.get("seed")),
        width=as_int(image.get("width")),
        height=as_int(image.get("height")),
        output_width=as_int(image.get("width")),
        output_height=as_int(image.get("height")),
        steps=as_int(image.get("steps")),
        cfg=as_float(image.get("cfg_scale")),
        sampler=as_str(image.get("sampler")),
        model=as_str(data.get("model_weights")) or as_str(data.get("model_id")),
        model_hash=as_str(data.get("model_hash")),
    )


def parse_dream(command: str) -> GenerationMetadata:
    """A 2.x ``Dream`` line: ``"a prompt [neg]" -s 50 -S 42 -W 512 -H 512 -C 7.5 -A k_lms``."""
    try:
        tokens = shlex.split(command)
    except ValueError as exc:
        return GenerationMetadata(source="none",
                                  warnings=(f"invokeai: unreadable Dream command line ({exc})",))
    values: dict[str, str] = {}
    prompt_parts: list[str] = []
    in_options = False  # the prompt is everything before the first switch
    i = 0
    while i < len(tokens):
        token = tokens[i]
        in_options = in_options or (token.startswith("-") and len(token) > 1)
        field = DREAM_OPTIONS.get(token)
        if field is not None and i + 1 < len(tokens):
            values.setdefault(field, tokens[i + 1])
            i += 2
            continue
        if field is None and token[:2] in DREAM_OPTIONS and len(token) > 2 and token[1] != "-":
            values.setdefault(DREAM_OPTIONS[token[:2]], token[2:])  # "-s50" form
        elif not in_options:
            prompt_parts.append(token)
        i += 1
    prompt, negative = split_negative(" ".join(prompt_parts))
    return GenerationMetadata(
        source="invokeai",
        prompt=prompt or None,
        negative_prompt=negative,
        seed=as_int(values.get("seed")),
        width=as_int(values.get("width")),
        height=as_int(values.get("height")),
        output_width=as_int(values.get("width")),
        output_height=as_int(values.get("height")),
        steps=as_int(values.get("steps")),
        cfg=as_float(values.get("cfg")),
        sampler=values.get("sampler"),
        model=values.get("model"),
    )
