"""``clip_score``: raw cosine similarity between an image and its prompt in CLIP space.

Raw cosine is the scale production thresholds are written in (``--min-clip 0.2`` with ViT-L/14;
SD outputs typically score 0.2-0.35). torchmetrics' CLIPScore is ``max(100 * cos, 0)`` and
Hessel et al.'s CLIP-S is ``2.5 * max(cos, 0)``: see docs/clip.md for converting thresholds.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import numpy as np

from sdeval.features.clip import OPTION_NAMES, TextEmbedding
from sdeval.metrics.base import FeatureBatch, ImageMetric, Missing, Score


class ClipScore(ImageMetric):
    name: ClassVar[str] = "clip_score"
    aliases: ClassVar[tuple[str, ...]] = ("clip",)
    requires: ClassVar[tuple[str, ...]] = ("clip_image", "clip_text")
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float | None, float | None]] = (-1.0, 1.0)
    unit: ClassVar[str] = "cosine"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "cosine similarity of the CLIP image and prompt embeddings (raw, not x100); "
        "ViT-L/14: >= 0.20 acceptable, > 0.25 good")
    #: a low score means the image does not show the prompt: change the prompt, not the seed
    default_action: ClassVar[str] = "reprompt"
    option_names: ClassVar[tuple[str, ...]] = OPTION_NAMES

    def compute(self, batch: FeatureBatch) -> list[Score]:
        out: list[Score] = []
        for image, text in zip(batch["clip_image"], batch["clip_text"]):
            if isinstance(image, Missing):
                out.append(image)
            elif isinstance(text, Missing):
                out.append(text)
            elif text is None:
                out.append(Missing("no prompt"))
            else:
                vector = text.vector if isinstance(text, TextEmbedding) else np.asarray(text)
                value = float(np.dot(np.asarray(image, dtype=np.float32), np.asarray(vector, dtype=np.float32)))
                out.append(value if math.isfinite(value) else Missing("CLIP gave a non-finite similarity"))
        return out

    def record_warnings(self, batch: FeatureBatch) -> list[tuple[str, ...]]:
        """Per-record warnings to add to each row (a prompt truncated to CLIP's context)."""
        texts: Sequence[Any] = batch.features.get("clip_text", [None] * len(batch))
        return [(t.warning,) if isinstance(t, TextEmbedding) and t.warning else () for t in texts]

    def protocol(self) -> dict[str, Any]:
        proto = super().protocol()
        proto["formula"] = "cos(normalise(image_embedding), normalise(text_embedding)); no scaling, no clamp"
        proto["torchmetrics_equivalent"] = "max(100 * clip_score, 0) per image"
        return proto
