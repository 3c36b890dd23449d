"""The metric contract (DESIGN.md, metrics contract).

A metric declares its facts as class attributes and implements only ``compute``; it never loads
images or models itself, it reads the features it ``requires``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from sdeval.features.base import Missing
from sdeval.inputs.record import ImageRecord

__all__ = ["Missing", "Score", "FeatureBatch", "Metric", "ImageMetric"]


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
    kind: ClassVar[str] = "image"  # "image" | "set" | "pair"
    requires: ClassVar[tuple[str, ...]] = ()
    higher_is_better: ClassVar[bool]
    range: ClassVar[tuple[float | None, float | None]] = (None, None)
    unit: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    #: the action a ``min_<name>`` / ``max_<name>`` policy shorthand applies
    default_action: ClassVar[str] = "reseed"
    #: other names accepted in policies and on the command line (``clip`` for ``clip_score``)
    aliases: ClassVar[tuple[str, ...]] = ()
    #: run options this metric reads (policy ``[gate.params]`` and CLI flags)
    option_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    def feature_extractors(self) -> Sequence[Any]:
        """Extractor instances this metric needs, configured from its options.

        The default builds the registered extractor of each id in ``requires``; the pipeline
        de-duplicates them by id so a backbone runs once whatever number of metrics read it.
        """
        from sdeval.features.registry import create_extractor

        return [create_extractor(fid, self.options) for fid in self.requires]

    def protocol(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "unit": self.unit,
                "higher_is_better": self.higher_is_better}


class ImageMetric(Metric):
    """One value per image."""

    kind: ClassVar[str] = "image"

    @abstractmethod
    def compute(self, batch: FeatureBatch) -> list[Score]:
        """One :data:`Score` per record of ``batch``."""
