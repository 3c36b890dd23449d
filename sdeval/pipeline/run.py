"""inputs → records → decoded batches → features → metrics → rows (DESIGN.md, data flow).

The one place where metrics meet images. Each feature extractor needed by any metric is built
once (de-duplicated by id), prepares each image in the decode pool and computes once per batch;
every metric then reads the shared features. Features go through one cache path
(:class:`~sdeval.pipeline.cache_plan.CachePlan`): looked up before the decode, stored after compute.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from sdeval.core.errors import UsageError
from sdeval.features.base import FeatureExtractor
from sdeval.features.cache import FeatureCache, NullCache, open_feature_cache
from sdeval.inputs.decode import DecodeOptions
from sdeval.inputs.record import ImageRecord, InputItem
from sdeval.metrics import registry
from sdeval.metrics.base import ROW_KINDS, FeatureBatch, ImageMetric, Metric, Missing
from sdeval.pipeline.cache_plan import CachePlan
from sdeval.pipeline.decode_pool import LoadedItem, default_workers, iter_loaded
from sdeval.pipeline.rows import SCHEMA_VERSION, DuplicateMarker, record_row

#: progress(done, total) — called from the consumer thread
ProgressFn = Callable[[int, int], None]
#: sink(feature_id, records, features) — every batch's features (cached or computed), for set-level
#: metrics that reduce them (FID statistics, KID/CMMD feature banks) without a second pass
FeatureSink = Callable[[str, Sequence[ImageRecord], Sequence[Any]], None]


@dataclass(frozen=True)
class RunOptions:
    """How to run (not what to judge): batching, threads, decode limits, metric options."""

    batch_size: int = 16
    workers: int = field(default_factory=default_workers)
    decode: DecodeOptions = DecodeOptions()
    #: options metrics and extractors read (``resolution``, model paths, device...)
    metric_options: Mapping[str, Any] = field(default_factory=dict)
    #: use the content-addressed feature cache (``--no-cache`` turns it off)
    cache: bool = True
    #: where the cache lives (None: the cache dir's ``features.sqlite``)
    cache_path: str | None = None


@dataclass
class RunStats:
    images: int = 0
    errors: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    #: extractor id -> [cache hits, computed]
    features: dict[str, list[int]] = field(default_factory=dict)
    cache_problems: list[str] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        """Plain data another process can merge (:meth:`merged`)."""
        return {"images": self.images, "errors": self.errors, "duplicates": self.duplicates,
                "seconds": self.seconds, "cache_problems": list(self.cache_problems),
                "features": {k: list(v) for k, v in self.features.items()}}

    @classmethod
    def merged(cls, parts: Sequence[Mapping[str, Any]]) -> "RunStats":
        """One run's statistics from every shard's :meth:`state` (seconds: the slowest shard)."""
        total = cls()
        for p in parts:
            total.images += p["images"]
            total.errors += p["errors"]
            total.duplicates += p["duplicates"]
            total.seconds = max(total.seconds, p["seconds"])
            total.cache_problems.extend(p["cache_problems"])
            for fid, (hits, computed) in p["features"].items():
                acc = total.features.setdefault(fid, [0, 0])
                acc[0] += hits
                acc[1] += computed
        return total


def open_cache(options: RunOptions) -> FeatureCache | NullCache:
    """The run's feature cache (a :class:`NullCache` under ``--no-cache``)."""
    return open_feature_cache(enabled=options.cache, path=options.cache_path)


def build_metrics(names: Iterable[str], options: Mapping[str, Any]) -> list[ImageMetric]:
    """Instantiate per-image metrics (kinds ``image``, ``pair``) by name or alias, once each.

    A set or group metric has no value per image: asking for one here is a usage error.
    """
    metrics: dict[str, ImageMetric] = {}
    for name in names:
        canonical = registry.resolve(name)
        if canonical in metrics:
            continue
        kind = registry.get_class(canonical).kind
        if kind not in ROW_KINDS:
            raise UsageError(f"'{canonical}' is a {kind}-level metric (one value per folder, not per image): "
                             f"use `sdeval eval`, not a per-image gate rule")
        metric = registry.create(canonical, options)
        assert isinstance(metric, ImageMetric)  # the registry checked the kind's interface
        metrics[canonical] = metric
    return list(metrics.values())


def extractors_of(metrics: Sequence[Metric]) -> list[FeatureExtractor]:
    """The union of features the metrics need, one extractor per id, availability checked."""
    out: dict[str, FeatureExtractor] = {}
    for m in metrics:
        for ex in m.feature_extractors():
            out.setdefault(ex.id, ex)
    for ex in out.values():
        ex.check_available()
    return list(out.values())


def iter_rows(items: Sequence[InputItem], metrics: Sequence[ImageMetric], options: RunOptions = RunOptions(),
              progress: ProgressFn | None = None, stats: RunStats | None = None,
              extra_extractors: Sequence[FeatureExtractor] = (),
              feature_sink: FeatureSink | None = None) -> Iterator[dict[str, Any]]:
    """One row dict per input, in input order, duplicates (same bytes) marked.

    ``extra_extractors`` run beside the metrics' own (set-level metrics' features); every batch's
    features go to ``feature_sink`` when given.
    """
    extractors = extractors_of(metrics)
    for ex in extra_extractors:
        if all(ex.id != e.id for e in extractors):
            ex.check_available()
            extractors.append(ex)
    stats = stats if stats is not None else RunStats()
    started = time.perf_counter()
    duplicates = DuplicateMarker()
    total = len(items)
    done = 0
    plan = CachePlan(extractors, open_cache(options))
    try:
        loaded = iter_loaded(items, plan, options=options.decode, workers=options.workers,
                             ahead=max(2 * options.batch_size, 4 * options.workers))
        for batch in _batched(loaded, options.batch_size):
            for row in _evaluate_batch(batch, metrics, extractors, plan, stats, feature_sink):
                duplicates.mark(row)
                stats.images += 1
                stats.errors += row["error"] is not None
                done += 1
                yield row
            stats.duplicates = duplicates.count
            if progress:
                progress(done, total)
    finally:
        stats.cache_problems.extend(plan.close())
        stats.seconds = time.perf_counter() - started


def iter_group_features(groups: Iterable[tuple[str, Sequence[InputItem]]], extractor: FeatureExtractor,
                        options: RunOptions, stats: RunStats | None = None
                        ) -> Iterator[tuple[str, list[Any], int]]:
    """(key, features of the readable members in order, unreadable count) for each group.

    The members go through the same loader, decode pool and feature cache as :func:`iter_rows`
    (a member whose feature is cached is not decoded); a batch never spans two groups, so a
    group's numbers do not depend on which other groups a process evaluates.
    """
    stats = stats if stats is not None else RunStats()
    started = time.perf_counter()
    plan = CachePlan([extractor], open_cache(options))
    pool = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="sdeval-decode")
    try:
        for key, members in groups:
            loaded = iter_loaded(members, plan, options=options.decode, executor=pool,
                                 ahead=max(2 * options.batch_size, 4 * options.workers))
            features: list[Any] = []
            errors = 0
            for batch in _batched(loaded, options.batch_size):
                good = [x for x in batch if x.record.error is None]
                errors += len(batch) - len(good)
                stats.images += len(batch)
                stats.errors += len(batch) - len(good)
                if good:
                    features.extend(_features(extractor, good, plan, stats))
            yield key, features, errors
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        stats.cache_problems.extend(plan.close())
        stats.seconds += time.perf_counter() - started


def _batched(it: Iterable[LoadedItem], n: int) -> Iterator[list[LoadedItem]]:
    batch: list[LoadedItem] = []
    for x in it:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _evaluate_batch(batch: list[LoadedItem], metrics: Sequence[ImageMetric], extractors: Sequence[FeatureExtractor],
                    plan: CachePlan, stats: RunStats, sink: FeatureSink | None = None) -> list[dict[str, Any]]:
    good = [x for x in batch if x.record.error is None]
    values: dict[str, list[Any]] = {}
    row_warnings: list[list[str]] = [[] for _ in good]
    if good:
        features = {ex.id: _features(ex, good, plan, stats) for ex in extractors}
        if sink is not None:
            for fid, feats in features.items():
                sink(fid, [x.record for x in good], feats)
        fb = FeatureBatch(records=[x.record for x in good], features=features)
        for m in metrics:
            values[m.name] = list(m.compute(fb))
            for i, ws in enumerate(m.record_warnings(fb)):
                row_warnings[i].extend(w for w in ws if w not in row_warnings[i])
    rows = []
    gi = 0
    for x in batch:
        row = record_row(x.record)
        missing: dict[str, str] = {}
        if x.record.error is None:
            row["warnings"].extend(row_warnings[gi])
            for m in metrics:
                row[m.name], why = _checked(m, values[m.name][gi])
                if why is not None:
                    missing[m.name] = why
            gi += 1
        else:
            for m in metrics:
                row[m.name] = None
        row["missing"] = missing
        rows.append(row)
    return rows


def _checked(metric: Metric, value: Any) -> tuple[float | None, str | None]:
    """(column value, why it is missing): a Missing keeps its reason; a value outside the metric's
    declared ``range`` (or NaN) is missing too, so a rule can never pass on a broken number."""
    if isinstance(value, Missing):
        return None, value.reason
    number = float(value)
    why = metric.out_of_range(number)
    return (None, why) if why is not None else (number, None)


def _features(ex: FeatureExtractor, good: list[LoadedItem], plan: CachePlan, stats: RunStats) -> list[Any]:
    """Cached features where the cache had them; one batched ``compute`` for the rest, then stored."""
    misses = [i for i, x in enumerate(good) if ex.id not in x.cached]
    out: list[Any] = [x.cached.get(ex.id) for x in good]
    if misses:
        computed = list(ex.compute([good[i].prepared[ex.id] for i in misses]))
        for i, value in zip(misses, computed):
            out[i] = value
        plan.store(ex, [good[i].record for i in misses], computed,
                   [good[i].companions.get(ex.id) for i in misses])
    counts = stats.features.setdefault(ex.id, [0, 0])
    counts[0] += len(good) - len(misses)
    counts[1] += len(misses)
    return out


def protocol_of(metrics: Sequence[Metric], extractors: Sequence[FeatureExtractor],
                options: RunOptions) -> dict[str, Any]:
    from sdeval.core.versions import package_versions
    from sdeval.inputs.decode import ALPHA_BACKGROUND

    return {
        "schema_version": SCHEMA_VERSION,
        "versions": package_versions(),
        "metrics": {m.name: m.protocol() for m in metrics},
        "features": {ex.id: ex.protocol() for ex in extractors},
        "decode": {"max_pixels": options.decode.max_pixels, "alpha_background": list(ALPHA_BACKGROUND),
                   "exif_orientation": "applied"},
        "batch_size": options.batch_size, "workers": options.workers,
    }
