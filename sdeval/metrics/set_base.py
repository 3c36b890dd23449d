"""Set-level metrics: one value per folder against a reference, from streamed features.

A set metric never sees images. It names one feature id and what it needs kept of each side:

* ``stats``: Gaussian sufficient statistics (n, float64 mean, float64 sum of centred outer
  products) in a :class:`~sdeval.metrics.distances.StatsAccumulator` — constant memory in N and
  exactly mergeable across shards (FID, CLIP-FID);
* ``bank``: the features themselves as float32 rows (KID, CMMD need pairwise kernels), N x D x 4
  bytes (2048-d Inception: 8 KiB per image, 80 MiB per 10,000).

:class:`FeatureSet` keeps both for one side of one feature, fed batch by batch by the pipeline's
feature sink, so the whole evaluation is one pass over the images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from sdeval.metrics.base import Metric
from sdeval.metrics.distances import FeatureStats, StatsAccumulator

KEEPS = ("stats", "bank")


@dataclass(frozen=True)
class SetValue:
    """One set-level result: the value, extra numbers (std, N...) and warnings to surface."""

    name: str
    value: float
    details: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, **dict(self.details), "warnings": list(self.warnings)}


class FeatureSet:
    """Streamed features of one side (generated or reference) for one feature id.

    The bank is kept as (path, float32 row) chunks and sorted by path when read, so its order —
    which decides KID's random subsets — does not depend on batching or on how inputs were
    sharded over processes; sorted paths are also clean-fid's order for a folder.
    """

    #: rows buffered before a moments update: each update makes a few passes over the D x D matrix,
    #: so updating per 1024 rows instead of per batch is ~30x fewer passes (4-8 MiB of float32 held)
    FLUSH_ROWS = 1024

    def __init__(self, feature_id: str, keep_stats: bool, keep_bank: bool) -> None:
        self.feature_id = feature_id
        self._stats: StatsAccumulator | None = StatsAccumulator() if keep_stats else None
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self.keep_bank = keep_bank
        self._chunks: list[np.ndarray] = []
        self._paths: list[str] = []
        self.n = 0
        self.dim: int | None = None
        #: statistics loaded as they were stored (a reference side), returned unchanged
        self.fixed: FeatureStats | None = None

    def add(self, paths: Sequence[str], feats: Sequence[Any]) -> None:
        rows = [(p, f) for p, f in zip(paths, feats) if isinstance(f, np.ndarray)]
        if not rows:
            return
        arr = np.stack([np.asarray(f, dtype=np.float32).reshape(-1) for _, f in rows])
        if self.dim is None:
            self.dim = int(arr.shape[1])
        elif arr.shape[1] != self.dim:
            raise ValueError(f"{self.feature_id}: feature width changed from {self.dim} to {arr.shape[1]}")
        self.n += arr.shape[0]
        if self._stats is not None:
            self._pending.append(arr)
            self._pending_rows += arr.shape[0]
            if self._pending_rows >= self.FLUSH_ROWS:
                self._flush()
        if self.keep_bank:
            self._chunks.append(arr)
            self._paths.extend(p for p, _ in rows)

    def _flush(self) -> None:
        if self._stats is not None and self._pending:
            block = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._stats.update(block)
        self._pending, self._pending_rows = [], 0

    @property
    def stats(self) -> StatsAccumulator | None:
        """The moments so far (buffered rows folded in first)."""
        self._flush()
        return self._stats

    @stats.setter
    def stats(self, value: StatsAccumulator | None) -> None:
        self._pending, self._pending_rows = [], 0
        self._stats = value

    def merge(self, other: "FeatureSet") -> "FeatureSet":
        """Fold another shard's set into this one (in rank order)."""
        if other.n == 0:
            return self
        if self.dim is not None and other.dim is not None and other.dim != self.dim:
            raise ValueError(f"{self.feature_id}: feature widths differ ({self.dim} vs {other.dim})")
        self.dim = self.dim or other.dim
        self.n += other.n
        mine, theirs = self.stats, other.stats
        if mine is not None and theirs is not None:
            mine.merge(theirs)
        if self.keep_bank:
            self._chunks.extend(other._chunks)
            self._paths.extend(other._paths)
        return self

    def finalize_stats(self) -> FeatureStats:
        if self.fixed is not None:
            return self.fixed
        stats = self.stats
        if stats is None:
            raise ValueError(f"{self.feature_id}: statistics were not kept")
        return stats.finalize()

    def bank(self) -> np.ndarray:
        """(N, D) float32 features sorted by path."""
        if not self.keep_bank:
            raise ValueError(f"{self.feature_id}: features were not kept")
        if not self._chunks:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        arr = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        order = sorted(range(len(self._paths)), key=self._paths.__getitem__)
        if order != list(range(len(order))):
            arr = arr[order]
            self._paths = [self._paths[i] for i in order]
        self._chunks = [arr]
        return arr

    # -- transport (distributed gather, reference statistics) ----------------------------------------
    def state(self) -> dict[str, Any]:
        """Plain arrays and numbers: what another process needs to merge this set."""
        st = self.stats
        return {"feature_id": self.feature_id, "n": self.n, "dim": self.dim,
                "stats": None if st is None or st.n == 0 else (st.n, st.mean, st.m2),
                "keep_stats": st is not None, "keep_bank": self.keep_bank,
                "bank": (np.concatenate(self._chunks) if self._chunks else None) if self.keep_bank else None,
                "paths": list(self._paths) if self.keep_bank else None}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "FeatureSet":
        fs = cls(state["feature_id"], bool(state["keep_stats"]), bool(state["keep_bank"]))
        fs.n = int(state["n"])
        fs.dim = state["dim"]
        if state.get("stats") is not None:
            n, mean, m2 = state["stats"]
            fs.stats = StatsAccumulator.from_moments(n, mean, m2)
        if fs.keep_bank and state.get("bank") is not None:
            fs._chunks = [np.asarray(state["bank"], dtype=np.float32)]
            fs._paths = list(state["paths"])
        return fs

    @classmethod
    def from_arrays(cls, feature_id: str, *, n: int, mu: np.ndarray | None, sigma: np.ndarray | None,
                    bank: np.ndarray | None) -> "FeatureSet":
        """A reference side loaded from stored statistics (``sigma`` is the unbiased covariance)."""
        fs = cls(feature_id, keep_stats=mu is not None, keep_bank=bank is not None)
        fs.n = int(n)
        if mu is not None and sigma is not None:
            fs.dim = int(np.asarray(mu).shape[0])
            fs.fixed = FeatureStats(n=int(n), mu=mu, sigma=sigma)
        if bank is not None:
            arr = np.asarray(bank, dtype=np.float32)
            fs.dim = int(arr.shape[1])
            fs._chunks = [arr]
            fs._paths = [f"{i:012d}" for i in range(arr.shape[0])]  # stored already sorted
        return fs


class SetMetric(Metric):
    """One value per set against a reference; reads one feature's :class:`FeatureSet` per side."""

    kind: ClassVar[str] = "set"
    #: the feature id read
    feature: ClassVar[str]
    #: what of each side is kept: "stats", "bank"
    keeps: ClassVar[tuple[str, ...]] = ()
    #: False for metrics of the generated set alone
    needs_reference: ClassVar[bool] = True

    @classmethod
    def feature_ids(cls) -> tuple[str, ...]:
        return (cls.feature,)

    def value(self, generated: FeatureSet, reference: FeatureSet) -> SetValue:
        raise NotImplementedError
