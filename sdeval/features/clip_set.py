"""CLIP image embeddings for the set-level metrics (CMMD, CLIP-FID), on their own backbone.

CMMD is defined on CLIP ViT-L/14@336 (Jayasumana et al. 2024) while clip_score and the aesthetic
head read ViT-L/14 at 224: a different model, so a different feature id (``clip_image_set``) so
the pipeline runs both. Everything else (weights through the model registry, open_clip's eval
transform, L2 normalisation, the feature cache) is the shared ``ClipImage`` path.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from sdeval.features.clip import ClipImage

DEFAULT_MODEL = "ViT-L-14-336"
DEFAULT_PRETRAINED = "openai"
OPTION_NAMES = ("cmmd_clip_model", "cmmd_clip_pretrained", "device", "batch_size", "clip_precision",
                "offline", "model_paths")


class SetClipImage(ClipImage):
    """L2-normalised CLIP image embedding from ``cmmd_clip_model`` / ``cmmd_clip_pretrained``."""

    id: ClassVar[str] = "clip_image_set"
    version: ClassVar[str] = "1"
    option_names: ClassVar[tuple[str, ...]] = OPTION_NAMES

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        o = dict(options or {})
        o["clip_model"] = o.get("cmmd_clip_model") or DEFAULT_MODEL
        o["clip_pretrained"] = o.get("cmmd_clip_pretrained") or DEFAULT_PRETRAINED
        super().__init__(o)

    def identity(self) -> dict[str, Any]:
        """What must agree between generated and reference embeddings."""
        ref = self.weights()
        size = ref.preprocess.get("size")
        return {"feature": self.id, "model": ref.label, "weights_sha256": ref.sha256,
                "dim": ref.embed_dim, "resolution": list(size) if isinstance(size, (list, tuple)) else size,
                "preprocess": {k: ref.preprocess.get(k) for k in ("mean", "std", "interpolation", "resize_mode")},
                "precision": self._precision_label(), "normalised": True}
