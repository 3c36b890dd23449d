"""``sdeval compare``: run the arms through the pipeline once, pair them, test every metric.

One pipeline pass over every arm's images (sharded over ranks under ``torchrun``) computes the
per-image metrics and keeps each image's set features (Inception for FID/KID, CLIP for
CMMD/CLIP-FID) from the pipeline's feature sink; features come from the shared content cache, so a
baseline evaluated before costs no forward. One pass over ``--ref DIR`` (or stored statistics)
gives the reference side. Rank 0 then pairs each arm with the baseline, runs the tests
(:mod:`sdeval.compare.analysis`) and writes the result folder (:mod:`sdeval.compare.result`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, cast

import numpy as np

from sdeval.compare.arms import ArmInput, DiscoveredArm, arm_inputs, discover_arm, split_rows_by
from sdeval.compare.pairing import PAIR_BY, ArmPairing, Entry, entries_from_rows, pair_arms
from sdeval.core.errors import EXIT_INTERNAL, NothingPairedError, SdevalError, UsageError
from sdeval.pipeline.run import ProgressFn, RunOptions, RunStats

if TYPE_CHECKING:
    from sdeval.compare.result import CompareResult
    from sdeval.gates.policy import Policy
    from sdeval.metrics.base import ImageMetric
    from sdeval.metrics.set_base import FeatureSet, SetMetric

DEFAULT_METRICS = ("clip_score", "aesthetic")
#: set metrics the permutation test knows how to recompute on pooled features
SET_METRICS = ("fid", "kid", "cmmd", "clip_fid")


@dataclass(frozen=True)
class CompareSettings:
    """How the comparison decides: pairing, tests, multiplicity, margins (recorded in compare.json)."""

    pair_by: str = "key"
    alpha: float = 0.05
    resamples: int = 10000
    permutations: int = 1000
    seed: int = 0
    margins: Mapping[str, float] = None  # type: ignore[assignment]
    fail_on_regression: bool = False

    def __post_init__(self) -> None:
        if self.margins is None:
            object.__setattr__(self, "margins", {})
        if self.pair_by not in PAIR_BY:
            raise UsageError(f"--pair-by must be one of {', '.join(PAIR_BY)}, got {self.pair_by!r}")
        if not 0 < self.alpha < 1:
            raise UsageError(f"--alpha must be between 0 and 1, got {self.alpha}")
        if self.resamples < 100:
            raise UsageError(f"--resamples must be at least 100, got {self.resamples}")
        if self.permutations < 100:
            raise UsageError(f"permutations must be at least 100, got {self.permutations}")

    def as_dict(self) -> dict[str, Any]:
        return {"pair_by": self.pair_by, "alpha": self.alpha, "resamples": self.resamples,
                "permutations": self.permutations, "seed": self.seed, "margins": dict(self.margins),
                "multiplicity": "holm", "fail_on_regression": self.fail_on_regression}


@dataclass(frozen=True)
class _Spec:
    """What one run computes, decided before any image is read (the same on every rank)."""

    names: tuple[str, ...]
    row_metrics: tuple["ImageMetric", ...]
    #: per-image metrics tested (the asked ones; a policy's extra metrics only feed its verdicts)
    tested: tuple[str, ...]
    set_metrics: tuple["SetMetric", ...]
    features: Any  # evaluate.set_eval.SetFeatures
    options: RunOptions
    policy: "Policy | None"
    ref: str | None
    ref_stats: str | None


@dataclass
class ArmData:
    """One arm after the pass (rank 0): rows, relative paths, per-image set features by feature id."""

    name: str
    inputs: list[str]
    rows: list[dict[str, Any]]
    relpaths: list[str]
    features: dict[str, list[Any]]
    skipped: dict[str, int]
    manifests: list[str]


def compare(inputs: Sequence[str] | str = (), metrics: Sequence[str] | str | None = None, *,
            arms: Sequence[str | ArmInput] = (), arms_by: str | None = None, baseline: str | None = None,
            ref: str | None = None, ref_stats: str | None = None, policy: "Policy | str | None" = None,
            settings: CompareSettings | None = None, options: RunOptions | None = None,
            out_dir: str | Path | None = None, progress: ProgressFn | None = None,
            reference_progress: ProgressFn | None = None, distributed: bool | str = "auto",
            command: str = "compare") -> "CompareResult":
    """Compare arms (folders, globs, manifests; ``arms``: ``NAME=PATH``) against ``baseline``.

    ``arms_by``: split the single input into arms by a row field (model, sampler, cfg, steps,
    group, any metadata column). ``metrics``: per-image metrics of the registry (plug-ins included)
    and set metrics fid, kid, cmmd, clip_fid (which need ``ref`` or ``ref_stats``). ``policy``: a
    gate policy whose pass rates are compared too. Raises :class:`NothingPairedError` (exit 2) when
    an arm shares no key with the baseline. Under torchrun every rank computes its shard; rank 0
    tests and writes ``out_dir``; every rank gets the result without rows.
    """
    from sdeval.pipeline import sharding

    started_at, t0 = datetime.now(timezone.utc), time.perf_counter()
    settings = settings or CompareSettings()
    options = options or RunOptions()
    if out_dir is not None:
        from sdeval.results.files import check_result_folder

        check_result_folder(Path(out_dir))
    paths = [inputs] if isinstance(inputs, (str, Path)) else [str(p) for p in inputs]
    named = arm_inputs(paths, arms)
    if arms_by is not None and len(named) != 1:
        raise UsageError(f"--arms-by splits one input into arms; got {len(named)} inputs")
    if arms_by is None and len(named) < 2:
        raise UsageError("compare needs at least two arms (BASELINE CANDIDATE...), or one input with --arms-by FIELD")
    if settings.pair_by == "none":
        raise UsageError("--pair-by none: comparing unpaired arms is not supported; the tests here are paired "
                         "(generate the same prompts and seeds, or pair by file name with --pair-by filename)")
    spec = _spec(metrics, options, policy, ref, ref_stats, distributed, settings)
    discovered = [discover_arm(a) for a in named]
    ctx = sharding.init(distributed)
    try:
        merged = _run_pass(spec, discovered, ctx, progress, reference_progress)
        result = None
        failure = None
        if ctx.is_main:
            assert merged is not None
            try:
                result = _main(spec, settings, discovered, merged, arms_by, baseline, ctx.world_size,
                               started_at, t0, out_dir, command)
            except Exception as exc:
                if ctx.world_size == 1:
                    raise
                failure = {"message": f"{type(exc).__name__}: {exc}",
                           "exit_code": exc.exit_code if isinstance(exc, SdevalError) else EXIT_INTERNAL}
                ctx.broadcast({"failure": failure})
                raise
        shared = ctx.broadcast(None if result is None else {"report": result.report,
                                                            "metric_rows": result.metric_rows})
        if shared is not None and "failure" in shared:
            from sdeval.evaluate.set_eval import remote_error

            raise remote_error(shared["failure"])
        if result is None:
            from sdeval.compare.result import CompareResult

            result = CompareResult(report=shared["report"], metric_rows=shared["metric_rows"], pair_rows=[],
                                   unpaired=[], arm_rows={}, columns=())
        return result
    except BaseException:
        ctx.close(clean=False)
        raise
    finally:
        ctx.close()


# -- what to compute ---------------------------------------------------------------------------------------

def _spec(metrics: Sequence[str] | str | None, options: RunOptions, policy: "Policy | str | None",
          ref: str | None, ref_stats: str | None, distributed: bool | str, settings: CompareSettings) -> _Spec:
    from sdeval.evaluate.set_eval import feature_plan, parse_metric_names
    from sdeval.metrics import registry
    from sdeval.metrics.base import ROW_KINDS
    from sdeval.pipeline import sharding
    from sdeval.pipeline.run import build_metrics

    names = list(dict.fromkeys(registry.resolve(n) for n in parse_metric_names(metrics or list(DEFAULT_METRICS))))
    kinds = {n: registry.get_class(n).kind for n in names}
    for n, kind in kinds.items():
        if kind == "group":
            raise UsageError(f"'{n}' (a {kind} metric) is not compared yet: compare per-image and set metrics "
                             f"({', '.join(SET_METRICS)}), or run `sdeval eval` on each arm")
        if kind == "set" and n not in SET_METRICS:
            raise UsageError(f"set metric '{n}' has no paired test here (supported: {', '.join(SET_METRICS)})")
    set_names = [n for n in names if kinds[n] == "set"]
    if ref and ref_stats:
        raise UsageError("give either --ref DIR or --ref-stats NAME, not both")
    if set_names and not (ref or ref_stats):
        raise UsageError(f"{', '.join(set_names)} compare against a reference: give --ref DIR or --ref-stats NAME")
    for m in settings.margins:
        if registry.resolve(m) not in names and m != "pass_rate":
            raise UsageError(f"--margin {m}: metric '{m}' is not compared in this run (metrics: {', '.join(names)})")
    pol = None
    if policy is not None:
        from sdeval.gates.policy import Policy

        if isinstance(policy, Policy):
            pol = policy
        else:
            from sdeval.gates.policy import build_policy
            from sdeval.gates.sources import policy_source

            pol = build_policy(policy_source(policy), None)
    mo = dict(options.metric_options)
    if pol is not None:
        mo = {**pol.options, **mo}
    device = sharding.rank_device(mo.get("device"), distributed)
    if device:
        mo["device"] = device
    row_names = [n for n in names if kinds[n] in ROW_KINDS]
    all_rows = list(dict.fromkeys(row_names + (pol.metrics if pol is not None else [])))
    set_metrics = [cast("SetMetric", registry.get_class(n)(mo)) for n in set_names]
    return _Spec(names=tuple(names), row_metrics=tuple(build_metrics(all_rows, mo)), tested=tuple(row_names),
                 set_metrics=tuple(set_metrics), features=feature_plan(set_metrics, mo),
                 options=replace(options, metric_options=mo), policy=pol, ref=ref, ref_stats=ref_stats)


# -- the passes --------------------------------------------------------------------------------------------

@dataclass
class _Merged:
    rows: list[dict[str, Any]]
    #: feature id -> {path: feature}
    features: dict[str, dict[str, Any]]
    stats: RunStats
    reference: "FeatureSet | None" = None
    reference_sets: dict[str, "FeatureSet"] | None = None
    reference_stats: RunStats | None = None
    reference_entry: dict[str, Any] | None = None
    reference_warnings: tuple[str, ...] = ()


def _run_pass(spec: _Spec, discovered: Sequence[DiscoveredArm], ctx: Any, progress: ProgressFn | None,
              reference_progress: ProgressFn | None) -> _Merged | None:
    """Every arm's images in one pipeline pass (this rank's shard), the reference, merged on rank 0."""
    from sdeval.inputs.discovery import discover
    from sdeval.pipeline.run import iter_rows
    from sdeval.pipeline.sharding import Shard, gather_shards

    items = [item for arm in discovered for item in arm.items]
    set_ids = set(spec.features.extractors)
    mine: dict[str, dict[str, Any]] = {fid: {} for fid in set_ids}

    def sink(feature_id: str, records: Sequence[Any], feats: Sequence[Any]) -> None:
        if feature_id in mine:
            for rec, f in zip(records, feats):
                if isinstance(f, np.ndarray):
                    mine[feature_id][rec.path] = np.asarray(f, dtype=np.float32).reshape(-1)

    stats = RunStats()
    rows = list(iter_rows(ctx.shard(items), spec.row_metrics, spec.options, progress if ctx.is_main else None,
                          stats, extra_extractors=list(spec.features.extractors.values()), feature_sink=sink))
    shards = {"arms": Shard(rows, {}, stats)}
    ref_found = None
    if spec.ref and spec.features.extractors:
        ref_found = discover([str(spec.ref)])
        ref_sets = spec.features.sets()
        ref_stats = RunStats()

        def ref_sink(feature_id: str, records: Sequence[Any], feats: Sequence[Any]) -> None:
            fs = ref_sets.get(feature_id)
            if fs is not None:
                fs.add([r.path for r in records], feats)

        for _ in iter_rows(ctx.shard(ref_found.items), (), spec.options,
                           reference_progress if ctx.is_main else None, ref_stats,
                           extra_extractors=list(spec.features.extractors.values()), feature_sink=ref_sink):
            pass
        shards["reference"] = Shard([], ref_sets, ref_stats)
    merged = gather_shards(ctx, shards)
    gathered = ctx.gather(mine)
    if merged is None or gathered is None:
        return None
    features: dict[str, dict[str, Any]] = {fid: {} for fid in set_ids}
    for part in gathered:
        for fid, by_path in part.items():
            features[fid].update(by_path)
    out = _Merged(rows=merged["arms"].rows, features=features, stats=merged["arms"].stats)
    if "reference" in merged:
        ref = merged["reference"]
        out.reference_sets, out.reference_stats = dict(ref.sets), ref.stats
        assert ref_found is not None
        out.reference_entry = {"kind": "dir", "path": str(spec.ref), "images": ref.stats.images,
                               "errors": ref.stats.errors, "skipped_non_images": dict(ref_found.skipped)}
    elif spec.ref_stats and spec.features.extractors:
        out.reference_sets, out.reference_entry, out.reference_warnings = _stored_reference(spec)
    return out


def _stored_reference(spec: _Spec) -> tuple[dict[str, "FeatureSet"], dict[str, Any], tuple[str, ...]]:
    """``--ref-stats``: stored statistics, checked to be made like this run's features."""
    from sdeval.evaluate.reference_stats import reference_sets

    assert spec.ref_stats is not None
    return reference_sets(spec.ref_stats, spec.features.extractors, spec.features.keeps,
                          spec.options.metric_options, kid=any(m.name == "kid" for m in spec.set_metrics))


# -- rank 0 ------------------------------------------------------------------------------------------------

def _split_arms(discovered: Sequence[DiscoveredArm], merged: _Merged, arms_by: str | None, spec: _Spec
                ) -> tuple[list[ArmData], list[dict[str, Any]]]:
    """The merged rows back into arms (in input order), duplicates marked per arm; rows without an
    ``arms_by`` value are returned as unassigned (listed, never dropped silently)."""
    from sdeval.pipeline.rows import mark_duplicates

    rows = merged.rows
    out: list[ArmData] = []
    unassigned: list[dict[str, Any]] = []

    def feats(sel: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
        return {fid: [by_path.get(r["path"]) for r in sel] for fid, by_path in merged.features.items()}

    if arms_by is None:
        start = 0
        for arm in discovered:
            sel = [dict(r) for r in rows[start:start + len(arm.items)]]
            start += len(arm.items)
            mark_duplicates(sel)
            out.append(ArmData(arm.name, [arm.path], sel, list(arm.relpaths), feats(sel), dict(arm.skipped),
                               list(arm.manifests)))
        return out, unassigned
    (arm,) = discovered
    split, missing = split_rows_by(rows, arms_by)
    if len(split) < 2:
        raise UsageError(f"--arms-by {arms_by}: the images have {len(split)} distinct value(s) "
                         f"({', '.join(split) or 'none'}); a comparison needs at least two")
    for name, idx in split.items():
        sel = [dict(rows[i]) for i in idx]
        mark_duplicates(sel)
        out.append(ArmData(name, [arm.path], sel, [arm.relpaths[i] for i in idx], feats(sel), {}, list(arm.manifests)))
    for i in missing:
        unassigned.append({"arm": None, "path": rows[i]["path"], "key": None,
                           "reason": f"no value for --arms-by {arms_by}: in no arm"})
    return out, unassigned


def _output_node_reader(max_bytes: int) -> Callable[[Entry], str | None]:
    """The id of the ComfyUI output node that saved an image, from its embedded API graph: the saver
    whose ``filename_prefix`` (its last path part) starts the file name. None when unknown."""
    cache: dict[str, str | None] = {}

    def read(entry: Entry) -> str | None:
        if entry.path not in cache:
            cache[entry.path] = _saver_of(entry.path, max_bytes)
        return cache[entry.path]
    return read


def _saver_of(path: str, max_bytes: int) -> str | None:
    import io
    import json

    from PIL import Image

    from sdeval.core.io import read_regular_file
    from sdeval.formats.comfyui_graph import output_nodes

    try:
        with Image.open(io.BytesIO(read_regular_file(path, max_bytes))) as im:
            text = im.info.get("prompt") if isinstance(im.info, dict) else None
        if not isinstance(text, str) or len(text) > 4 << 20:
            return None
        graph = json.loads(text)
        if not isinstance(graph, dict):
            return None
    except Exception:  # noqa: BLE001 - an unreadable graph only means "node unknown"
        return None
    name = Path(path).name
    hits = []
    for nid in output_nodes(graph):
        prefix = str((graph[nid].get("inputs") or {}).get("filename_prefix") or "")
        last = prefix.replace("\\", "/").rsplit("/", 1)[-1]
        if last and name.startswith(last + "_"):
            hits.append((len(last), nid))
    if not hits:
        return None
    hits.sort(reverse=True)
    if len(hits) > 1 and hits[0][0] == hits[1][0]:
        return None
    return str(hits[0][1])


def _main(spec: _Spec, settings: CompareSettings, discovered: Sequence[DiscoveredArm], merged: _Merged,
          arms_by: str | None, baseline: str | None, world_size: int, started_at: datetime, t0: float,
          out_dir: str | Path | None, command: str) -> "CompareResult":
    from sdeval.compare.analysis import analyse
    from sdeval.compare.result import build_result, write_compare_folder

    arms, unassigned = _split_arms(discovered, merged, arms_by, spec)
    names = [a.name for a in arms]
    base_name = baseline if baseline is not None else names[0]
    if base_name not in names:
        raise UsageError(f"--baseline {base_name!r} is not an arm (arms: {', '.join(names)})")
    base = next(a for a in arms if a.name == base_name)
    others = [a for a in arms if a.name != base_name]
    node_of = _output_node_reader(spec.options.decode.max_file_bytes)
    base_entries = entries_from_rows(base.rows, base.relpaths)
    pairings: dict[str, ArmPairing] = {}
    for arm in others:
        pairings[arm.name] = pair_arms(arm.name, entries_from_rows(arm.rows, arm.relpaths), base_name,
                                       base_entries, pair_by=settings.pair_by, output_node=node_of)
    empty = [n for n, p in pairings.items() if not p.pairs]
    if empty:
        hint = (" (no image has both prompt and seed in its metadata on both sides? try --pair-by filename)"
                if settings.pair_by == "key" else "")
        raise NothingPairedError(f"nothing could be paired between {', '.join(map(repr, empty))} and the baseline "
                                 f"'{base_name}' by {settings.pair_by}{hint}")
    if spec.policy is not None:
        from sdeval.gates.engine import judge_image

        for arm in arms:
            for row in arm.rows:
                v = judge_image(row, spec.policy)
                row.update(verdict=v.verdict, reasons=list(v.reasons), notes=list(v.notes))
    analysis = analyse(spec, settings, base, others, pairings, merged.reference_sets or {})
    return write_compare_folder(build_result(
        spec=spec, settings=settings, arms=arms, baseline=base_name, pairings=pairings, unassigned=unassigned,
        analysis=analysis, merged=merged, world_size=world_size, started_at=started_at,
        seconds=time.perf_counter() - t0, arms_by=arms_by, command=command), out_dir)


def _spec_protocol(spec: _Spec, world_size: int) -> dict[str, Any]:
    """The pipeline's protocol (models, weights, preprocessing, versions) plus the set metrics'."""
    from sdeval.pipeline.run import extractors_of, protocol_of

    extractors = extractors_of(spec.row_metrics) + list(spec.features.extractors.values())
    protocol = protocol_of(spec.row_metrics, list({ex.id: ex for ex in extractors}.values()), spec.options)
    protocol["set_metrics"] = {m.name: m.protocol() for m in spec.set_metrics}
    protocol["distributed"] = {"world_size": world_size}
    return protocol
