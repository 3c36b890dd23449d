"""Feature extractors: the expensive part, computed once per image and shared by metrics.

An extractor splits its work in two so decoding and preprocessing overlap the model:

* :meth:`FeatureExtractor.prepare` runs in the decode thread pool, once per image, on the
  decoded RGB array (CPU work: resizing, colour conversion, cheap statistics);
* :meth:`FeatureExtractor.compute` runs on the consumer side on a batch of prepared items
  (the batched model forward). CPU-only features do all their work in ``prepare`` and
  return it unchanged from ``compute`` (the default).

Every hook the pipeline calls is declared here with its default, so an extractor overrides only
what differs (a prompt-keyed text feature overrides ``content_key``; a feature of an image *and*
its reference overrides ``companion_path`` and ``prepare_pair``).
"""

from __future__ import annotations

import hashlib
import json
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


@dataclass(frozen=True)
class Companion:
    """The second image of a pair feature (a reference), read by the same loader as the first.

    ``image`` is the decoded RGB array, or None with ``error`` saying why it could not be read.
    """

    path: str
    sha256: str | None
    image: np.ndarray | None = None
    error: str | None = None


class FeatureExtractor(ABC):
    #: unique id metrics name in ``requires``
    id: ClassVar[str]
    #: bump when preprocessing or output changes (it is part of the cache key)
    version: ClassVar[str] = "1"
    #: False for features computed from the record alone (a prompt's text embedding): the
    #: pipeline then calls ``prepare(None, record)`` and never decodes pixels for them
    needs_image: ClassVar[bool] = True
    #: run options this extractor reads (a policy's ``[options]`` is checked against them)
    option_names: ClassVar[tuple[str, ...]] = ()
    #: True for a feature of an image and a second file (its reference): see :meth:`companion_path`
    has_companion: ClassVar[bool] = False

    def prepare(self, image: np.ndarray, record: ImageRecord) -> Any:
        """Per-image CPU work on an (H, W, 3) uint8 RGB array. Runs in worker threads."""
        return image

    def compute(self, prepared: Sequence[Any]) -> Sequence[Any]:
        """Batched work on prepared items; returns one feature per item, in order."""
        return list(prepared)

    # -- pair features ------------------------------------------------------------------------------
    def companion_path(self, record: ImageRecord) -> str | None:
        """The second image this feature of ``record`` reads (its paired reference), or None.

        The loader reads it once with the run's decode limits, keys the cache on both files'
        sha256 and calls :meth:`prepare_pair`; without a companion it calls ``prepare(None, record)``
        (no pixels are decoded for a pair that cannot be formed; the value is never cached).
        """
        return None

    def prepare_pair(self, image: np.ndarray, companion: Companion, record: ImageRecord) -> Any:
        """``prepare`` for an image and its companion (decoded, or with the reason it is not)."""
        raise NotImplementedError(f"{self.id} declares a companion but no prepare_pair")

    # -- feature cache ------------------------------------------------------------------------------
    def cache_key(self) -> str | None:
        """Feature-cache key: id, version and a digest of the protocol (models, preprocessing).

        ``None`` means "never cache" (random weights, say). Anything that changes the numbers
        must change the protocol, so stale features can only miss.
        """
        digest = hashlib.sha256(json.dumps(self.protocol(), sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.id}/v{self.version}/{digest[:16]}"

    def content_key(self, record: ImageRecord) -> str | None:
        """What the feature of ``record`` is a function of: the file's sha256 (None: do not cache)."""
        return record.sha256

    def to_cache(self, value: Any) -> Any:
        """The value as the cache stores it (numpy arrays, JSON values, or a flat dict of both)."""
        return value

    def from_cache(self, stored: Any) -> Any:
        """The inverse of :meth:`to_cache`."""
        return stored

    # -- identity -----------------------------------------------------------------------------------
    def check_available(self) -> None:
        """Raise :class:`sdeval.core.errors.MetricUnavailableError` (or ModelMissingError) if it can't run."""

    def protocol(self) -> dict[str, Any]:
        """What identifies these numbers: model, weights hash, preprocessing, versions."""
        return {"id": self.id, "version": self.version}

    def identity(self) -> dict[str, Any]:
        """What must agree between the generated and the reference side of a set metric."""
        return self.protocol()
