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
from sdeval.inputs.loader import LoadedItem, default_workers, iter_loaded
from sdeval.inputs.record import ImageRecord, InputItem
from sdeval.metrics import registry
from sdeval.metrics.base import FeatureBatch, Metric, Missing

#: progress(done, total) — called from the consumer thread
ProgressFn = Callable[[int, int], None]

SCHEMA_VERSION = 1

META_COLUMNS = ("source", "prompt", "negative_prompt", "seed", "requested_width", "requested_height",
                "base_width", "base_height", "steps", "cfg", "sampler", "scheduler", "model", "model_hash")


@dataclass(frozen=True)
class RunOptions:
    """How to run (not what to judge): batching, threads, decode limits, metric options."""

    batch_size: int = 16
    workers: int = field(default_factory=default_workers)
    decode: DecodeOptions = DecodeOptions()
    #: options metrics and extractors read (``resolution``, model paths, device...)
    metric_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RunStats:
    images: int = 0
    errors: int = 0
    duplicates: int = 0
    seconds: float = 0.0


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
              progress: ProgressFn | None = None, stats: RunStats | None = None) -> Iterator[dict[str, Any]]:
    """One row dict per input, in input order."""
    extractors = extractors_of(metrics)
    stats = stats if stats is not None else RunStats()
    started = time.perf_counter()
    first_seen: dict[str, str] = {}
    total = len(items)
    done = 0
    loaded = iter_loaded(items, lambda rec: extractors, options=options.decode, workers=options.workers,
                         ahead=max(2 * options.batch_size, 4 * options.workers))
    for batch in _batched(loaded, options.batch_size):
        for row in _evaluate_batch(batch, metrics, extractors):
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


def _evaluate_batch(batch: list[LoadedItem], metrics: Sequence[Metric],
                    extractors: Sequence[FeatureExtractor]) -> list[dict[str, Any]]:
    good = [x for x in batch if x.record.error is None]
    values: dict[str, list[Any]] = {}
    if good:
        features = {ex.id: ex.compute([x.prepared[ex.id] for x in good]) for ex in extractors}
        fb = FeatureBatch(records=[x.record for x in good], features=features)
        for m in metrics:
            values[m.name] = list(m.compute(fb))
    rows = []
    gi = 0
    for x in batch:
        row = record_row(x.record)
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


def record_row(rec: ImageRecord) -> dict[str, Any]:
    """The identity and metadata columns of a results row."""
    md = rec.metadata
    return {
        "path": rec.path, "sha256": rec.sha256, "size_bytes": rec.size_bytes, "format": rec.format,
        "mode": rec.mode, "width": rec.width, "height": rec.height,
        "source": md.source, "prompt": md.prompt, "negative_prompt": md.negative_prompt, "seed": md.seed,
        "requested_width": md.output_width, "requested_height": md.output_height,
        "base_width": md.width, "base_height": md.height, "steps": md.steps, "cfg": md.cfg,
        "sampler": md.sampler, "scheduler": md.scheduler, "model": md.model, "model_hash": md.model_hash,
        "group": rec.group, "duplicate_of": None,
        "warnings": list(rec.warnings), "error": rec.error,
    }


def protocol_of(metrics: Sequence[Metric], extractors: Sequence[FeatureExtractor],
                options: RunOptions) -> dict[str, Any]:
    from sdeval.inputs.decode import ALPHA_BACKGROUND
    from sdeval.protocol import package_versions

    return {
        "schema_version": SCHEMA_VERSION,
        "versions": package_versions(),
        "metrics": {m.name: m.protocol() for m in metrics},
        "features": {ex.id: ex.protocol() for ex in extractors},
        "decode": {"max_pixels": options.decode.max_pixels, "alpha_background": list(ALPHA_BACKGROUND),
                   "exif_orientation": "applied"},
        "batch_size": options.batch_size, "workers": options.workers,
    }
