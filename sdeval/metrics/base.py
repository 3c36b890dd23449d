"""The metric contract (DESIGN.md, metrics contract).

A metric declares its facts as class attributes and implements the interface of its ``kind``;
it never loads images or models itself, it reads the features it ``requires``:

* ``image`` (:class:`ImageMetric`): one value per image, from that image's features;
* ``pair`` (:class:`PairMetric`): one value per image and its paired reference, from a pair feature
  (one row per generated image, like ``image``);
* ``set`` (:class:`~sdeval.metrics.set_base.SetMetric`): one value per set against a reference set;
* ``group`` (:class:`GroupMetric`): one value per set, reduced over groups of the set's images
  (the seeds of one prompt), from per-image features.

What a run does with a metric follows from ``kind`` (:data:`ROW_KINDS` give a results column).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from sdeval.features.base import FeatureExtractor, Missing
from sdeval.inputs.record import ImageRecord

__all__ = ["Missing", "Score", "FeatureBatch", "Metric", "ImageMetric", "PairMetric", "GroupMetric",
           "GroupValue", "KINDS", "ROW_KINDS"]

KINDS = ("image", "pair", "set", "group")
#: kinds with one value per image: a column of the results table, usable in gate rules
ROW_KINDS = ("image", "pair")

Score = float | Missing


@dataclass(frozen=True)
class FeatureBatch:
    """Records of one batch and, per feature id, one feature per record (aligned)."""

    records: Sequence[ImageRecord]
    features: Mapping[str, Sequence[Any]]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, feature_id: str) -> Sequence[Any]:
        return self.features[feature_id]


class Metric(ABC):
    name: ClassVar[str]
    kind: ClassVar[str] = "image"  # one of KINDS
    requires: ClassVar[tuple[str, ...]] = ()
    higher_is_better: ClassVar[bool]
    #: the values a correct computation can give; a value outside it is a bug, never a score
    range: ClassVar[tuple[float | None, float | None]] = (None, None)
    unit: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    #: the action a ``min_<name>`` / ``max_<name>`` policy shorthand applies
    default_action: ClassVar[str] = "reseed"
    #: other names accepted in policies and on the command line (``clip`` for ``clip_score``)
    aliases: ClassVar[tuple[str, ...]] = ()
    #: run options this metric reads (policy ``[options]`` and CLI flags); a policy's
    #: ``[options]`` is checked against these and the extractors' own
    option_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    @classmethod
    def feature_ids(cls) -> tuple[str, ...]:
        """Ids of the features this metric reads (without building extractors)."""
        return tuple(cls.requires)

    def feature_extractors(self) -> Sequence[FeatureExtractor]:
        """Extractor instances this metric needs, configured from its options.

        The default builds the registered extractor of each id in :meth:`feature_ids`; the pipeline
        de-duplicates them by id so a backbone runs once whatever number of metrics read it.
        """
        from sdeval.features.registry import create_extractor

        return [create_extractor(fid, self.options) for fid in self.feature_ids()]

    def protocol(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "unit": self.unit,
                "higher_is_better": self.higher_is_better}

    @classmethod
    def out_of_range(cls, value: float) -> str | None:
        """Why ``value`` cannot be a value of this metric (not finite, outside ``range``), or None.

        A tolerance of 1e-6 (relative to the bound, at least absolute) absorbs float rounding.
        """
        if not math.isfinite(value):
            return f"{cls.name} gave a non-finite value ({value})"
        lo, hi = cls.range
        if lo is not None and value < lo - 1e-6 * max(1.0, abs(lo)):
            return f"{cls.name} gave {value:.6g}, below its range minimum {lo:g} (a metric bug, not a score)"
        if hi is not None and value > hi + 1e-6 * max(1.0, abs(hi)):
            return f"{cls.name} gave {value:.6g}, above its range maximum {hi:g} (a metric bug, not a score)"
        return None


class ImageMetric(Metric):
    """One value per image."""

    kind: ClassVar[str] = "image"

    @abstractmethod
    def compute(self, batch: FeatureBatch) -> list[Score]:
        """One :data:`Score` per record of ``batch``."""

    def record_warnings(self, batch: FeatureBatch) -> list[tuple[str, ...]]:
        """Warnings to add to each record's row (none by default), aligned with ``batch``."""
        return [() for _ in range(len(batch))]


class PairMetric(ImageMetric):
    """One value per image and its paired reference; reads a pair feature (see
    :meth:`~sdeval.features.base.FeatureExtractor.companion_path`) and gives one row per image."""

    kind: ClassVar[str] = "pair"


@dataclass(frozen=True)
class GroupValue:
    """A group metric's value for one group (one prompt across seeds)."""

    key: str
    images: int
    pairs: int
    mean: float | None
    sampled: bool = False
    errors: int = 0


class GroupMetric(Metric):
    """One value per set, reduced over groups of its images; reads one per-image feature.

    The run forms the groups (manifest ``group``, else the prompt), calls :meth:`select` on each,
    feeds :meth:`group_value` the features of the selected members, and :meth:`summarize` the results.
    """

    kind: ClassVar[str] = "group"
    #: the per-image feature id read
    feature: ClassVar[str]

    @classmethod
    def feature_ids(cls) -> tuple[str, ...]:
        return (cls.feature,)

    def select(self, key: str, members: Sequence[str]) -> tuple[list[str], bool]:
        """The members of group ``key`` to use and whether that is a sample (default: all)."""
        return list(members), False

    def group_cache_key(self) -> str | None:
        """Key under which group values are cached by their members' content (None: not cached)."""
        return None

    @abstractmethod
    def group_value(self, key: str, features: Sequence[Any], errors: int, sampled: bool) -> GroupValue:
        """The value of one group from its readable members' features (in member order)."""

    @abstractmethod
    def summarize(self, groups: Sequence[GroupValue], counts: Mapping[str, int]) -> dict[str, Any]:
        """The set's entry (``value``, details, ``warnings``) from every group's value."""

