"""The one path between extractors and the feature cache: look up before decoding, store after compute.

A feature is cached under ``(content key, extractor cache key)``: the content key is the file's
sha256 (or what the extractor keys by, a prompt), joined with the companion file's sha256 for a
pair feature; the extractor key names the model, weights and preprocessing. Lookups run in the
decode workers, once the file's bytes are hashed, so a hit skips the pixel decode.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from sdeval.features.base import FeatureExtractor, Missing
from sdeval.features.cache import FeatureCache, NullCache
from sdeval.inputs.record import ImageRecord


class CachePlan:
    """Feature-cache lookups and stores for one run's extractors over one cache."""

    def __init__(self, extractors: Sequence[FeatureExtractor], cache: FeatureCache | NullCache) -> None:
        self.extractors = list(extractors)
        self.cache = cache
        self.keys = {ex.id: ex.cache_key() if cache.enabled else None for ex in self.extractors}

    def content_key(self, ex: FeatureExtractor, rec: ImageRecord, companion_sha: str | None = None) -> str | None:
        """``rec``'s key for ``ex``; a pair feature's also names its companion (None: uncacheable)."""
        key = ex.content_key(rec)
        if ex.has_companion:
            return f"{key}+{companion_sha}" if key and companion_sha else None
        return key

    def lookup(self, rec: ImageRecord, companions: Mapping[str, str | None] | None = None
               ) -> tuple[list[FeatureExtractor], dict[str, Any]]:
        """(extractors that still need ``rec``, cached features by extractor id).

        ``companions``: extractor id -> sha256 of the companion file the loader read for it.
        """
        companions = companions or {}
        needed: list[FeatureExtractor] = []
        cached: dict[str, Any] = {}
        for ex in self.extractors:
            fkey, ckey = self.keys[ex.id], self.content_key(ex, rec, companions.get(ex.id))
            if fkey and ckey:
                hit = self.cache.get_many([ckey], fkey)
                if ckey in hit:
                    cached[ex.id] = ex.from_cache(hit[ckey])
                    continue
            needed.append(ex)
        return needed, cached

    def store(self, ex: FeatureExtractor, records: Sequence[ImageRecord], values: Sequence[Any],
              companions: Sequence[str | None] | None = None) -> int:
        """Cache computed features (Missing/None skipped); returns how many were written."""
        fkey = self.keys.get(ex.id)
        if not fkey:
            return 0
        shas = companions if companions is not None else [None] * len(records)
        items = {}
        for rec, value, sha in zip(records, values, shas):
            ckey = self.content_key(ex, rec, sha)
            if ckey and value is not None and not isinstance(value, (Missing, BaseException)):
                items[ckey] = ex.to_cache(value)
        return self.cache.put_many(fkey, items) if items else 0

    def close(self) -> list[str]:
        """Close the cache; the problems it met (corrupt file, write failures) for the summary."""
        problems = list(self.cache.problems)
        self.cache.close()
        return problems
