"""The typed record every metadata reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

#: Names of the formats a record can come from (``GenerationMetadata.source``).
SOURCES = ("comfyui", "a1111", "invokeai", "fooocus", "novelai", "sidecar", "manifest", "none")


@dataclass(frozen=True)
class SamplerInfo:
    """One sampler node of a ComfyUI graph (a graph may hold several: hires pass, refiner)."""

    node_id: str
    class_type: str
    seed: int | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    denoise: float | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    #: graph input paths holding the seed, e.g. (("3", "seed"),) or (("25", "noise_seed"),)
    seed_inputs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LoraInfo:
    """One LoRA applied to the model: its file name and strengths (None: not stated; a
    model-only loader has no CLIP strength)."""

    name: str
    strength_model: float | None = None
    strength_clip: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "strength_model": self.strength_model,
                "strength_clip": self.strength_clip}


@dataclass(frozen=True)
class GenerationMetadata:
    """What a generator recorded about how an image was made. Every field may be unknown (None)."""

    source: str = "none"
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    #: the base (first-pass / latent) generation size: what a regeneration asks for.
    width: int | None = None
    height: int | None = None
    #: the size the saved image should have (after hires fix, latent/image upscales), when the
    #: record says enough to know it; None when it cannot be known (model upscalers, crops...).
    output_width: int | None = None
    output_height: int | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    model: str | None = None
    model_hash: str | None = None
    #: the VAE file that decoded the image (None: the checkpoint's own, or not recorded).
    vae: str | None = None
    #: LoRAs applied to the model, in the order applied.
    loras: tuple[LoraInfo, ...] = ()
    #: True when the saved size is set by a pixel-space resize after the last VAE decode
    #: (``ImageScale`` to a fixed size after a model upscaler...): the latent grid (multiple of 8)
    #: says nothing about such an image.
    output_resized: bool = False
    #: ComfyUI: every sampler found, primary first.
    samplers: tuple[SamplerInfo, ...] = ()
    #: raw metadata text kept as found, keyed by chunk/tag name (size-capped).
    raw: dict[str, str] = field(default_factory=dict)
    #: problems met while reading (malformed JSON, unresolved links...): row warnings, never crashes.
    warnings: tuple[str, ...] = ()

    def merged(self, override: "GenerationMetadata") -> "GenerationMetadata":
        """Fields set in ``override`` win (manifest values override embedded metadata).

        A manifest ``width``/``height`` states the size the image is expected to have, so it sets
        the output size too (unless the override names an output size of its own).
        """
        changes: dict[str, Any] = {}
        for name in ("prompt", "negative_prompt", "seed", "width", "height", "output_width",
                     "output_height", "steps", "cfg", "sampler", "scheduler", "model",
                     "model_hash", "vae"):
            value = getattr(override, name)
            if value is not None:
                changes[name] = value
        for base, out in (("width", "output_width"), ("height", "output_height")):
            if getattr(override, base) is not None and getattr(override, out) is None:
                changes[out] = getattr(override, base)
        if changes and override.source != "none":
            changes["source"] = (
                override.source if self.source == "none" else f"{self.source}+{override.source}")
        if override.loras:
            changes["loras"] = override.loras
        changes["warnings"] = self.warnings + override.warnings
        changes["raw"] = {**self.raw, **override.raw}
        return replace(self, **changes)
