"""One registry for built-in and plug-in metrics (entry-point group ``sdeval.metrics``).

Built-ins are listed as ``module:Class`` strings and imported on first use, so listing or
validating names never imports torch. Unknown names get a "did you mean" suggestion; names of
metrics sdeval knows of but cannot provide here raise :class:`MetricUnavailableError`.

Plug-ins (DESIGN.md, metrics contract): a plug-in cannot take a built-in's name, two plug-ins
cannot take the same name, and a plug-in that fails to load is a :class:`PluginWarning` naming it
and its distribution; it becomes an error only for a run that asks for that metric.
:func:`plugin_problems` returns the same problems as data.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Mapping

from sdeval.core.errors import MetricUnavailableError, UsageError
from sdeval.metrics.base import KINDS, Metric

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
    "blown_highlights": "sdeval.metrics.artifacts:BlownHighlights",
    "colourfulness": "sdeval.metrics.artifacts:Colourfulness",
    "saturation": "sdeval.metrics.artifacts:Saturation",
    "clipped_colour": "sdeval.metrics.artifacts:ClippedColour",
    "noise": "sdeval.metrics.artifacts:Noise",
    "latent_grid": "sdeval.metrics.artifacts:LatentGrid",
    "seam": "sdeval.metrics.artifacts:Seam",
    "tile_seam": "sdeval.metrics.artifacts:TileSeam",
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
#: aliases of built-ins (declared on their classes; listed here so checking a plug-in's names never
#: imports the built-in modules). A test keeps this in step with the classes.
BUILTIN_ALIASES = {"clip": "clip_score", "sharpness": "laplacian_var", "colorfulness": "colourfulness",
                   "clipped_color": "clipped_colour"}
#: options every model-backed run reads, whatever the metrics (device choice, offline mode, weights)
COMMON_OPTION_NAMES = ("device", "offline", "model_paths", "batch_size")


class PluginWarning(UserWarning):
    """A metric plug-in was refused or failed to load (the run goes on without it)."""


@dataclass(frozen=True)
class MetricOrigin:
    """Where a metric comes from: sdeval itself, a plug-in distribution, or ``register()``."""

    kind: str  # "built-in" | "plug-in" | "registered"
    distribution: str = "sdeval"
    version: str | None = None
    #: the entry point's ``module:attr`` (plug-ins) or the class's module (registered)
    target: str = ""

    def describe(self) -> str:
        if self.kind == "built-in":
            return "built-in"
        if self.kind == "plug-in":
            return f"plug-in {self.distribution} {self.version or '(unknown version)'}"
        return f"registered by {self.target}"


@dataclass(frozen=True)
class PluginProblem:
    """A plug-in that was refused or is broken; ``fatal_for`` names the metric a run cannot use."""

    name: str
    origin: MetricOrigin
    message: str
    #: the metric name whose use is an error (None: only a warning, e.g. the built-in stays)
    fatal_for: str | None = None


_builtin_classes: dict[str, type[Metric]] = {}
_plugins: dict[str, type[Metric]] = {}
_registered: dict[str, type[Metric]] = {}
_origins: dict[str, MetricOrigin] = {}
_problems: list[PluginProblem] = []
_plugins_loaded = False


def _sdeval_origin() -> MetricOrigin:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed: str | None = version("sdeval")
    except PackageNotFoundError:  # running from a source tree
        installed = None
    return MetricOrigin("built-in", "sdeval", installed, "")


def register(cls: type[Metric]) -> type[Metric]:
    """Register a metric class in this process (a decorator for tests and embedding code).

    Refused for a built-in's name or a name another class already has.
    """
    _load_plugins()
    _check_interface(cls)
    name = cls.name
    if name in _BUILTIN or name in BUILTIN_ALIASES:
        raise UsageError(f"cannot register '{name}' ({cls.__module__}.{cls.__qualname__}): "
                         f"it is the name of a built-in metric of sdeval")
    other = _plugins.get(name) or _registered.get(name)
    if other is not None and other is not cls:
        raise UsageError(f"cannot register '{name}' ({cls.__module__}.{cls.__qualname__}): the name is taken by "
                         f"{other.__module__}.{other.__qualname__} ({_origins[name].describe()})")
    if _plugins.get(name) is not cls:
        _registered[name] = cls
        _origins[name] = MetricOrigin("registered", target=f"{cls.__module__}.{cls.__qualname__}")
    return cls


def _check_interface(cls: Any) -> None:
    """TypeError unless ``cls`` is a metric class implementing its declared kind's interface."""
    from sdeval.metrics.base import GroupMetric, ImageMetric
    from sdeval.metrics.set_base import SetMetric

    if not isinstance(cls, type) or not issubclass(cls, Metric):
        raise TypeError(f"{cls!r} is not a subclass of sdeval.metrics.base.Metric")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise TypeError(f"{cls.__qualname__} has no 'name'")
    interface = {"image": ImageMetric, "pair": ImageMetric, "set": SetMetric, "group": GroupMetric}
    if cls.kind not in KINDS:
        raise TypeError(f"{cls.__qualname__}.kind is {cls.kind!r}, not one of {', '.join(KINDS)}")
    if not issubclass(cls, interface[cls.kind]):
        raise TypeError(f"{cls.__qualname__} declares kind '{cls.kind}' but does not implement "
                        f"{interface[cls.kind].__module__}.{interface[cls.kind].__qualname__}")


def _ep_origin(ep: EntryPoint) -> MetricOrigin:
    dist = getattr(ep, "dist", None)  # absent on entry points not read from a distribution
    name = dist.metadata["Name"] if dist is not None else "(unknown distribution)"
    return MetricOrigin("plug-in", name, dist.version if dist is not None else None, ep.value)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    claims: dict[str, list[tuple[type[Metric], MetricOrigin]]] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        origin = _ep_origin(ep)
        try:
            cls = ep.load()
            _check_interface(cls)
        except Exception as exc:  # a broken plug-in must not take sdeval down
            _problem(ep.name, origin, f"metric plug-in '{ep.name}' ({ep.value}) from {origin.describe()} "
                                      f"failed to load: {type(exc).__name__}: {exc}", fatal_for=ep.name)
            continue
        claims.setdefault(cls.name, []).append((cls, origin))
    sdeval = _sdeval_origin()
    for name, entries in sorted(claims.items()):
        builtin = name if name in _BUILTIN else BUILTIN_ALIASES.get(name)
        if builtin is not None:
            for cls, origin in entries:
                _problem(name, origin, f"metric plug-in '{name}' ({origin.target}) from {origin.describe()} "
                                       f"cannot replace the built-in metric '{builtin}' of sdeval "
                                       f"{sdeval.version or '(source tree)'}; the plug-in was refused and the "
                                       f"built-in is used "
                                       f"(rename the plug-in's metric)")
            continue
        if len({cls for cls, _ in entries}) > 1:
            who = " and ".join(f"{o.describe()} ({o.target})" for _, o in entries)
            for _, origin in entries:
                _problem(name, origin, f"metric name '{name}' is claimed by more than one plug-in: {who}; "
                                       f"both were refused (uninstall one of them)", fatal_for=name)
            continue
        cls, origin = entries[0]
        _plugins[name] = cls
        _origins[name] = origin
        _registered.pop(name, None)  # a plug-in module that also calls register()


def _problem(name: str, origin: MetricOrigin, message: str, fatal_for: str | None = None) -> None:
    problem = PluginProblem(name, origin, message, fatal_for)
    _problems.append(problem)
    warnings.warn(message, PluginWarning, stacklevel=3)


def plugin_problems() -> tuple[PluginProblem, ...]:
    """Plug-ins that were refused or failed to load (each was also a :class:`PluginWarning`)."""
    _load_plugins()
    return tuple(_problems)


def reload_plugins() -> None:
    """Forget loaded plug-ins and their problems; the next lookup reads the entry points again."""
    global _plugins_loaded
    for name in _plugins:
        _origins.pop(name, None)
    _plugins.clear()
    _problems.clear()
    _plugins_loaded = False


def names() -> list[str]:
    """Every metric name available (built-in and plug-in)."""
    _load_plugins()
    return sorted(set(_BUILTIN) | set(_plugins) | set(_registered))


def origin(name: str) -> MetricOrigin:
    """Where the metric ``name`` comes from."""
    canonical = resolve(name)
    return _origins.get(canonical) or _sdeval_origin()


def _alias_map() -> dict[str, str]:
    out = dict(_PLANNED_ALIASES)
    for name in names():
        for alias in get_class(name).aliases:
            out.setdefault(alias, name)
    return out


def _fatal(name: str) -> PluginProblem | None:
    return next((p for p in _problems if p.fatal_for == name), None)


def resolve(name: str) -> str:
    """Canonical metric name for ``name`` (an alias or a name). Raises on unknown names."""
    _load_plugins()
    if name in _BUILTIN or name in _plugins or name in _registered:
        return name
    problem = _fatal(name)
    if problem is not None:
        raise MetricUnavailableError(name, problem.message,
                                     f"fix or uninstall the distribution {problem.origin.distribution} "
                                     f"(pip uninstall {problem.origin.distribution})")
    aliases = _alias_map()
    if name in aliases:
        target = aliases[name]
        if target in _BUILTIN or target in _plugins or target in _registered:
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
    if name in _BUILTIN:
        if name not in _builtin_classes:
            module_name, attr = _BUILTIN[name].split(":")
            _builtin_classes[name] = getattr(importlib.import_module(module_name), attr)
        return _builtin_classes[name]
    if name in _plugins:
        return _plugins[name]
    if name in _registered:
        return _registered[name]
    return get_class(resolve(name))


def create(name: str, options: Mapping[str, Any] | None = None) -> Metric:
    return get_class(resolve(name))(options)


def option_names() -> frozenset[str]:
    """Every run option some metric or feature extractor declares, plus :data:`COMMON_OPTION_NAMES`."""
    from sdeval.features.registry import extractor_class

    out = set(COMMON_OPTION_NAMES)
    for name in names():
        cls = get_class(name)
        out.update(cls.option_names)
        for fid in cls.feature_ids():
            try:
                out.update(extractor_class(fid).option_names)
            except KeyError:  # a plug-in naming a feature nobody registered fails when it runs
                continue
    return frozenset(out)
