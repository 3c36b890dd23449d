"""``aesthetic``: LAION's improved aesthetic predictor v2 on the shared CLIP image embedding.

The head is the published MLP with its exact layer layout (keys ``layers.0/2/4/6/7``) so that
``sac+logos+ava1-l14-linearMSE.pth`` loads with ``strict=True``; a renamed or reshaped layer
would fail loudly instead of scoring with half the weights. It was trained on L2-normalised
OpenAI CLIP ViT-L/14 image embeddings: a backbone of another width cannot feed it (usage
error), and a different 768-wide backbone gives numbers the 1-10 scale does not describe
(recorded in the protocol).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from sdeval.core.errors import MetricUnavailableError, ModelMissingError
from sdeval.features.clip import OPTION_NAMES
from sdeval.metrics.base import FeatureBatch, ImageMetric, Missing, Score
from sdeval.models.loaded import load_once

MODEL_ID = "aesthetic-v2-l14"
INPUT_DIM = 768
TRAINED_ON = "ViT-L-14/openai"
TRAINED_ON_ID = "clip-vit-l-14-openai"
#: (in, out, dropout after) of each Linear, in order; dropouts are identity at inference
LAYOUT = ((768, 1024, 0.2), (1024, 128, 0.2), (128, 64, 0.1), (64, 16, None), (16, 1, None))

LOADED_KIND = "aesthetic"

_head_class: Any = None


def head_class() -> Any:
    """The predictor's ``nn.Module`` (defined on first use so importing sdeval never imports torch)."""
    global _head_class
    if _head_class is None:
        import torch
        from torch import nn

        class AestheticHead(nn.Module):
            """Linear(768,1024) Dropout(.2) Linear(1024,128) Dropout(.2) Linear(128,64) Dropout(.1)
            Linear(64,16) Linear(16,1): no activations, exactly as published."""

            def __init__(self, input_size: int = INPUT_DIM) -> None:
                super().__init__()
                layers: list[nn.Module] = []
                for i, (n_in, n_out, dropout) in enumerate(LAYOUT):
                    layers.append(nn.Linear(input_size if i == 0 else n_in, n_out))
                    if dropout is not None:
                        layers.append(nn.Dropout(dropout))
                self.layers = nn.Sequential(*layers)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.layers(x)

        _head_class = AestheticHead
    return _head_class


def load_head(path: Path) -> Any:
    """The head loaded from a ``.pth`` state dict (CPU, ``weights_only=True``, ``strict=True``), once per
    file version (path, size, mtime) per process."""
    real = Path(path).resolve()
    try:
        st = os.stat(real)
        key: tuple[Any, ...] = (str(real), st.st_size, st.st_mtime_ns)
    except OSError:
        key = (str(real),)
    return load_once(LOADED_KIND, key, lambda: _read_head(real))


def _read_head(path: Path) -> Any:
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a bad file must name itself
        raise ModelMissingError(
            f"could not read the aesthetic head {path}: {exc}\n  how to get it: "
            f"run `sdeval models fetch {MODEL_ID}`") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    head = head_class()()
    try:
        head.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelMissingError(
            f"{path} is not a LAION aesthetic v2 head (keys layers.0/2/4/6/7 expected): {exc}") from exc
    return head.eval()


class Aesthetic(ImageMetric):
    name: ClassVar[str] = "aesthetic"
    requires: ClassVar[tuple[str, ...]] = ("clip_image",)
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float | None, float | None]] = (None, None)
    unit: ClassVar[str] = "score (about 1-10)"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "LAION improved aesthetic predictor v2 on CLIP ViT-L/14 (openai) embeddings; >= 5 is the usual bar")
    #: an ugly image is usually fixed by another seed with the same prompt
    default_action: ClassVar[str] = "reseed"
    option_names: ClassVar[tuple[str, ...]] = OPTION_NAMES

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._head: Any = None
        self._path: Path | None = None
        self._backbone_label: str | None = None
        self._backbone_registry_id: str | None = None

    def feature_extractors(self) -> Sequence[Any]:
        extractors = list(super().feature_extractors())
        for extractor in extractors:
            width = extractor.embed_dim() if hasattr(extractor, "embed_dim") else None
            if width is not None and width != INPUT_DIM:
                self._unavailable_width(width, extractor.settings.model_name)
            ref = getattr(extractor, "weights", None)
            if callable(ref):
                resolved = ref()
                self._backbone_label = resolved.label
                self._backbone_registry_id = resolved.registry_id
        return extractors

    def _unavailable_width(self, width: int, model: str) -> None:
        raise MetricUnavailableError(
            self.name, f"the LAION aesthetic head takes {INPUT_DIM}-wide CLIP ViT-L/14 embeddings, but the "
                       f"CLIP backbone '{model}' gives {width}",
            "use --clip-model ViT-L-14 --clip-pretrained openai (the default) or drop the aesthetic rule")

    def weights_path(self) -> Path:
        if self._path is None:
            from sdeval.models.fetch import resolve

            self._path = resolve(MODEL_ID, self.options, progress=self.options.get("fetch_progress"),
                                 offline=self.options.get("offline"))
        return self._path

    def head(self) -> Any:
        if self._head is None:
            self._head = load_head(self.weights_path())
        return self._head

    def compute(self, batch: FeatureBatch) -> list[Score]:
        embeddings = batch["clip_image"]
        rows = [i for i, e in enumerate(embeddings) if not isinstance(e, Missing) and e is not None]
        out: list[Score] = [e if isinstance(e, Missing) else Missing("no CLIP embedding") for e in embeddings]
        if not rows:
            return out
        stacked = np.stack([np.asarray(embeddings[i], dtype=np.float32) for i in rows])
        if stacked.shape[1] != INPUT_DIM:
            self._unavailable_width(int(stacked.shape[1]), self._backbone_label or "?")
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(stacked))
            # the head was fitted on L2-normalised embeddings; clip_image already is, this is cheap insurance
            x = torch.nn.functional.normalize(x, dim=-1)
            scores = self.head()(x).squeeze(-1).double().numpy()
        for i, s in zip(rows, scores):
            out[i] = float(s) if np.isfinite(s) else Missing("aesthetic head gave a non-finite score")
        return out

    def protocol(self) -> dict[str, Any]:
        from sdeval.models.fetch import weights_check
        from sdeval.models.hashes import weights_sha256

        proto = super().protocol()
        path = self.weights_path()
        proto.update({
            "model_id": MODEL_ID, "weights": path.name, "weights_sha256": weights_sha256(path),
            "weights_check": weights_check(MODEL_ID, path, self.options),
            "input": "L2-normalised CLIP image embedding", "trained_on": TRAINED_ON,
        })
        if self._backbone_label is not None:
            proto["backbone"] = self._backbone_label
            proto["backbone_matches_training"] = (self._backbone_label == TRAINED_ON
                                                  or self._backbone_registry_id == TRAINED_ON_ID)
        return proto
