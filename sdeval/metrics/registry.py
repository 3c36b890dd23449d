"""One registry for built-in and plug-in metrics (entry-point group ``sdeval.metrics``).

Built-ins are listed as ``module:Class`` strings and imported on first use, so listing or
validating names never imports torch. Unknown names get a "did you mean" suggestion; names of
metrics sdeval knows of but cannot provide here raise :class:`MetricUnavailableError`.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any, Mapping

from sdeval.core.errors import MetricUnavailableError, UsageError
from sdeval.metrics.base import Metric

ENTRY_POINT_GROUP = "sdeval.metrics"

_BUILTIN: dict[str, str] = {
    "pixel_std": "sdeval.metrics.pixel:PixelStd",
    "pixel_max": "sdeval.metrics.pixel:PixelMax",
    "size_error": "sdeval.metrics.resolution:SizeError",
    "size_mod8": "sdeval.metrics.resolution:SizeMod8",
    "nsfw": "sdeval.metrics.nsfw:Nsfw",
    "clip_score": "sdeval.metrics.clip_score:ClipScore",
    "aesthetic": "sdeval.metrics.aesthetic:Aesthetic",
    "laplacian_var": "sdeval.metrics.artifacts:LaplacianVariance",
    "blur": "sdeval.metrics.artifacts:Blur",
    "motion_blur": "sdeval.metrics.artifacts:MotionBlur",
    "contrast": "sdeval.metrics.artifacts:Contrast",
    "brightness": "sdeval.metrics.artifacts:Brightness",
    "white_point": "sdeval.metrics.artifacts:WhitePoint",
    "clipped_highlights": "sdeval.metrics.artifacts:ClippedHighlights",
    "colourfulness": "sdeval.metrics.artifacts:Colourfulness",
    "saturation": "sdeval.metrics.artifacts:Saturation",
    "clipped_colour": "sdeval.metrics.artifacts:ClippedColour",
    "noise": "sdeval.metrics.artifacts:Noise",
    "latent_grid": "sdeval.metrics.artifacts:LatentGrid",
    "seam": "sdeval.metrics.artifacts:Seam",
    "duplication": "sdeval.metrics.artifacts:Duplication",
    "face_count": "sdeval.metrics.faces:FaceCount",
    "face_size": "sdeval.metrics.faces:FaceSize",
    "face_sharpness": "sdeval.metrics.faces:FaceSharpness",
    "face_confidence": "sdeval.metrics.faces:FaceConfidence",
    "fid": "sdeval.metrics.fid:Fid",
    "kid": "sdeval.metrics.fid:Kid",
    "cmmd": "sdeval.metrics.fid:Cmmd",
    "clip_fid": "sdeval.metrics.fid:ClipFid",
    "lpips_ref": "sdeval.metrics.lpips_metrics:LpipsRef",
    "lpips_diversity": "sdeval.metrics.lpips_metrics:LpipsDiversity",
}

#: metrics sdeval knows by name but does not provide in this build: name -> (why, remedy)
_PLANNED: dict[str, tuple[str, str]] = {
}
_PLANNED_ALIASES = {"clip": "clip_score"}

_classes: dict[str, type[Metric]] = {}
_plugins_loaded = False


def register(cls: type[Metric]) -> type[Metric]:
    """Register a metric class (usable as a decorator by plugins and tests)."""
    _classes[cls.name] = cls
    return cls


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take sdeval down
            raise UsageError(f"metric plugin '{ep.name}' ({ep.value}) failed to load: {exc}") from exc
        _classes[getattr(cls, "name", ep.name)] = cls


def names() -> list[str]:
    """Every metric name available (built-in and plug-in)."""
    _load_plugins()
    return sorted(set(_BUILTIN) | set(_classes))


def _alias_map() -> dict[str, str]:
    out = dict(_PLANNED_ALIASES)
    for name in names():
        for alias in getattr(get_class(name), "aliases", ()):
            out[alias] = name
    return out


def resolve(name: str) -> str:
    """Canonical metric name for ``name`` (an alias or a name). Raises on unknown names."""
    _load_plugins()
    if name in _classes or name in _BUILTIN:
        return name
    aliases = _alias_map()
    if name in aliases:
        target = aliases[name]
        if target in _classes or target in _BUILTIN:
            return target
        name = target
    if name in _PLANNED:
        why, remedy = _PLANNED[name]
        raise MetricUnavailableError(name, why, remedy)
    known = names() + list(aliases) + list(_PLANNED)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UsageError(f"unknown metric '{name}'{hint} (known: {', '.join(names())})")


def get_class(name: str) -> type[Metric]:
    _load_plugins()
    if name in _classes:
        return _classes[name]
    if name not in _BUILTIN:
        return get_class(resolve(name))
    module_name, attr = _BUILTIN[name].split(":")
    cls = getattr(importlib.import_module(module_name), attr)
    _classes[name] = cls
    return cls


def create(name: str, options: Mapping[str, Any] | None = None) -> Metric:
    return get_class(resolve(name))(options)
