"""Feature extractors: the expensive part, computed once per image and shared by metrics.

An extractor splits its work in two so decoding and preprocessing overlap the model:

* :meth:`FeatureExtractor.prepare` runs in the decode thread pool, once per image, on the
  decoded RGB array (CPU work: resizing, colour conversion, cheap statistics);
* :meth:`FeatureExtractor.compute` runs on the consumer side on a batch of prepared items
  (the batched model forward). CPU-only features do all their work in ``prepare`` and
  return it unchanged from ``compute`` (the default).
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from sdeval.inputs.record import ImageRecord


@dataclass(frozen=True)
class Missing:
    """A metric value that could not be computed for one image, with the reason."""

    reason: str

    def __bool__(self) -> bool:  # a Missing never counts as a value
        return False



class FeatureExtractor(ABC):
    #: unique id metrics name in ``requires``
    id: ClassVar[str]
    #: bump when preprocessing or output changes (it is part of the cache key)
    version: ClassVar[str] = "1"

    def prepare(self, image: np.ndarray, record: ImageRecord) -> Any:
        """Per-image CPU work on an (H, W, 3) uint8 RGB array. Runs in worker threads."""
        return image

    def compute(self, prepared: Sequence[Any]) -> Sequence[Any]:
        """Batched work on prepared items; returns one feature per item, in order."""
        return list(prepared)

    #: False for features computed from the record alone (a prompt's text embedding): the
    #: pipeline then calls ``prepare(None, record)`` and never decodes pixels for them
    needs_image: ClassVar[bool] = True

    def cache_key(self) -> str | None:
        """Feature-cache key: id, version and a digest of the protocol (models, preprocessing).

        ``None`` means "never cache" (random weights, say). Anything that changes the numbers
        must change the protocol, so stale features can only miss.
        """
        import hashlib
        import json

        digest = hashlib.sha256(json.dumps(self.protocol(), sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.id}/v{self.version}/{digest[:16]}"

    def check_available(self) -> None:
        """Raise :class:`sdeval.core.errors.MetricUnavailableError` (or ModelMissingError) if it can't run."""

    def protocol(self) -> dict[str, Any]:
        """What identifies these numbers: model, weights hash, preprocessing, versions."""
        return {"id": self.id, "version": self.version}
