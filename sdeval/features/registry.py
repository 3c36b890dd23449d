"""Feature extractor registry: id -> factory. Metrics name the ids they require."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from sdeval.features.base import FeatureExtractor

#: id -> "module:attr" of a factory taking the run options; imported lazily so that
#: ``sdeval --help`` never imports torch or onnxruntime.
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
}
_REGISTERED: dict[str, Callable[[Mapping[str, Any]], FeatureExtractor]] = {}


def register_extractor(feature_id: str, factory: Callable[[Mapping[str, Any]], FeatureExtractor]) -> None:
    _REGISTERED[feature_id] = factory


def create_extractor(feature_id: str, options: Mapping[str, Any] | None = None) -> FeatureExtractor:
    options = options or {}
    if feature_id in _REGISTERED:
        return _REGISTERED[feature_id](options)
    target = _BUILTIN.get(feature_id)
    if target is None:
        raise KeyError(f"unknown feature extractor '{feature_id}'")
    module_name, attr = target.split(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(options) if _takes_options(factory) else factory()


def _takes_options(factory: Any) -> bool:
    import inspect

    try:
        return len(inspect.signature(factory).parameters) >= 1
    except (TypeError, ValueError):
        return False
