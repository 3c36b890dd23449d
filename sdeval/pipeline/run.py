"""inputs → records → decoded batches → features → metrics → rows (DESIGN.md, data flow).

The one place where metrics meet images. Each feature extractor needed by any metric is built
once (de-duplicated by id), prepares each image in the decode pool and computes once per batch;
every metric then reads the shared features.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from sdeval.features.base import FeatureExtractor
from sdeval.inputs.decode import DecodeOptions
from sdeval.pipeline.decode_pool import LoadedItem, default_workers, iter_loaded
from sdeval.inputs.record import ImageRecord, InputItem
from sdeval.metrics import registry
from sdeval.metrics.base import FeatureBatch, Metric, Missing
from sdeval.pipeline.rows import SCHEMA_VERSION, record_row

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


class _CachePlan:
    """Feature-cache lookups (in decode workers) and stores (after compute) for a run."""

    def __init__(self, extractors: Sequence[FeatureExtractor], options: RunOptions) -> None:
        from sdeval.features.cache import NullCache, open_feature_cache

        self.extractors = list(extractors)
        self.cache = open_feature_cache(enabled=options.cache, path=options.cache_path) if options.cache \
            else NullCache()
        self.keys = {ex.id: ex.cache_key() if self.cache.enabled else None for ex in self.extractors}

    def content_key(self, ex: FeatureExtractor, rec: ImageRecord) -> str | None:
        fn = getattr(ex, "content_key", None)
        return fn(rec) if callable(fn) else rec.sha256

    def lookup(self, rec: ImageRecord) -> tuple[list[FeatureExtractor], dict[str, Any]]:
        needed: list[FeatureExtractor] = []
        cached: dict[str, Any] = {}
        for ex in self.extractors:
            fkey, ckey = self.keys[ex.id], self.content_key(ex, rec)
            if fkey and ckey:
                hit = self.cache.get_many([ckey], fkey)
                if ckey in hit:
                    decode = getattr(ex, "from_cache", None)
                    cached[ex.id] = decode(hit[ckey]) if callable(decode) else hit[ckey]
                    continue
            needed.append(ex)
        return needed, cached

    def store(self, ex: FeatureExtractor, records: Sequence[ImageRecord], values: Sequence[Any]) -> None:
        fkey = self.keys[ex.id]
        if not fkey:
            return
        encode = getattr(ex, "to_cache", None)
        items = {}
        for rec, value in zip(records, values):
            ckey = self.content_key(ex, rec)
            if ckey and value is not None and not isinstance(value, Missing):
                items[ckey] = encode(value) if callable(encode) else value
        if items:
            self.cache.put_many(fkey, items)

    def close(self) -> list[str]:
        problems = list(getattr(self.cache, "problems", []))
        self.cache.close()
        return problems


def build_metrics(names: Iterable[str], options: Mapping[str, Any]) -> list[Metric]:
    """Instantiate metrics by (canonical or alias) name, once each, and check they can run."""
    metrics: dict[str, Metric] = {}
    for name in names:
        canonical = registry.resolve(name)
        if canonical not in metrics:
            metrics[canonical] = registry.create(canonical, options)
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


def iter_rows(items: Sequence[InputItem], metrics: Sequence[Metric], options: RunOptions = RunOptions(),
              progress: ProgressFn | None = None, stats: RunStats | None = None,
              extra_extractors: Sequence[FeatureExtractor] = (),
              feature_sink: FeatureSink | None = None) -> Iterator[dict[str, Any]]:
    """One row dict per input, in input order.

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
    first_seen: dict[str, str] = {}
    total = len(items)
    done = 0
    plan = _CachePlan(extractors, options)
    try:
        loaded = iter_loaded(items, plan.lookup, options=options.decode, workers=options.workers,
                             ahead=max(2 * options.batch_size, 4 * options.workers))
        for batch in _batched(loaded, options.batch_size):
            for row in _evaluate_batch(batch, metrics, extractors, plan, stats, feature_sink):
                sha = row.get("sha256")
                if sha:
                    if sha in first_seen:
                        row["duplicate_of"] = first_seen[sha]
                        stats.duplicates += 1
                    else:
                        first_seen[sha] = row["path"]
                stats.images += 1
                stats.errors += row["error"] is not None
                done += 1
                yield row
            if progress:
                progress(done, total)
    finally:
        stats.cache_problems.extend(plan.close())
        stats.seconds = time.perf_counter() - started


def _batched(it: Iterable[LoadedItem], n: int) -> Iterator[list[LoadedItem]]:
    batch: list[LoadedItem] = []
    for x in it:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _evaluate_batch(batch: list[LoadedItem], metrics: Sequence[Metric], extractors: Sequence[FeatureExtractor],
                    plan: _CachePlan, stats: RunStats, sink: FeatureSink | None = None) -> list[dict[str, Any]]:
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
            extra = getattr(m, "record_warnings", None)
            if callable(extra):
                for i, ws in enumerate(extra(fb)):
                    row_warnings[i].extend(w for w in ws if w not in row_warnings[i])
    rows = []
    gi = 0
    for x in batch:
        row = record_row(x.record)
        if x.record.error is None:
            row["warnings"].extend(row_warnings[gi])
        missing: dict[str, str] = {}
        for m in metrics:
            if x.record.error is not None:
                row[m.name] = None
                continue
            v = values[m.name][gi]
            if isinstance(v, Missing):
                row[m.name] = None
                missing[m.name] = v.reason
            else:
                row[m.name] = float(v)
        if x.record.error is None:
            gi += 1
        row["missing"] = missing
        rows.append(row)
    return rows


def _features(ex: FeatureExtractor, good: list[LoadedItem], plan: _CachePlan, stats: RunStats) -> list[Any]:
    """Cached features where the cache had them; one batched ``compute`` for the rest, then stored."""
    misses = [i for i, x in enumerate(good) if ex.id not in x.cached]
    out: list[Any] = [x.cached.get(ex.id) for x in good]
    if misses:
        computed = list(ex.compute([good[i].prepared[ex.id] for i in misses]))
        for i, value in zip(misses, computed):
            out[i] = value
        plan.store(ex, [good[i].record for i in misses], computed)
    counts = stats.features.setdefault(ex.id, [0, 0])
    counts[0] += len(good) - len(misses)
    counts[1] += len(misses)
    return out


def protocol_of(metrics: Sequence[Metric], extractors: Sequence[FeatureExtractor],
                options: RunOptions) -> dict[str, Any]:
    from sdeval.inputs.decode import ALPHA_BACKGROUND
    from sdeval.core.versions import package_versions

    return {
        "schema_version": SCHEMA_VERSION,
        "versions": package_versions(),
        "metrics": {m.name: m.protocol() for m in metrics},
        "features": {ex.id: ex.protocol() for ex in extractors},
        "decode": {"max_pixels": options.decode.max_pixels, "alpha_background": list(ALPHA_BACKGROUND),
                   "exif_orientation": "applied"},
        "batch_size": options.batch_size, "workers": options.workers,
    }
