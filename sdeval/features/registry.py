"""Feature extractor registry: id -> extractor class. Metrics name the ids they require."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

from sdeval.features.base import FeatureExtractor

#: id -> "module:Class"; imported lazily so that ``sdeval --help`` never imports torch or onnxruntime.
_BUILTIN: dict[str, str] = {
    "pixel_stats": "sdeval.features.pixel_stats:PixelStats",
    "open_nsfw": "sdeval.features.open_nsfw:OpenNsfw",
    "clip_image": "sdeval.features.clip:ClipImage",
    "clip_text": "sdeval.features.clip:ClipText",
    "artifact_signals": "sdeval.features.artifacts:ArtifactSignals",
    "face_signals": "sdeval.features.faces:FaceSignals",
    "inception": "sdeval.features.inception:InceptionFeatures",
    "clip_image_set": "sdeval.features.clip_set:SetClipImage",
    "lpips_ref_pair": "sdeval.features.lpips_features:LpipsRefPair",
    "lpips_trunk": "sdeval.features.lpips_features:LpipsTrunk",
}
_REGISTERED: dict[str, type[FeatureExtractor]] = {}


def register_extractor(feature_id: str, cls: type[FeatureExtractor]) -> None:
    """Make ``cls`` (built with the run options) the extractor of ``feature_id``."""
    _REGISTERED[feature_id] = cls


def extractor_class(feature_id: str) -> type[FeatureExtractor]:
    if feature_id in _REGISTERED:
        return _REGISTERED[feature_id]
    target = _BUILTIN.get(feature_id)
    if target is None:
        raise KeyError(f"unknown feature extractor '{feature_id}'")
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


def create_extractor(feature_id: str, options: Mapping[str, Any] | None = None) -> FeatureExtractor:
    cls = extractor_class(feature_id)
    return cls(options or {}) if _takes_options(cls) else cls()


def _takes_options(cls: Any) -> bool:
    try:
        return len(inspect.signature(cls).parameters) >= 1
    except (TypeError, ValueError):
        return False
