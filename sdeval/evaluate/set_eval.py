"""``sdeval eval``: how far a generated set is from a reference, and how diverse it is.

One pass over the generated images computes every per-image metric (kinds ``image`` and ``pair``:
clip_score, aesthetic, lpips_ref...) and streams the features the ``set`` metrics need (Inception
for FID/KID, CLIP for CMMD/CLIP-FID) into float64 moments and float32 banks; one pass over a
reference folder does the same (or stored statistics stand in for it). ``group`` metrics
(lpips_diversity) then read their per-image features group by group (the groups — prompts — are
known only after the pass), through the same loader and feature cache. Features come from the
shared content-addressed cache, so a nightly rerun over a mostly unchanged folder recomputes almost
nothing. What happens to a metric follows from its declared ``kind``.

The result folder is the gate's: ``results.jsonl``/``results.csv`` (one row per generated image)
and ``summary.json`` (set-level values, per-image distributions, warnings, the protocol).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, cast

from sdeval.core.errors import EXIT_INTERNAL, SdevalError, UsageError
from sdeval.pipeline.rows import SCHEMA_VERSION
from sdeval.pipeline.run import ProgressFn, RunOptions, RunStats
from sdeval.results.schema import eval_columns
from sdeval.results.summary import metric_stats

if TYPE_CHECKING:
    import pandas as pd

    from sdeval.features.base import FeatureExtractor
    from sdeval.gates.rules import Rule
    from sdeval.inputs.discovery import Discovery
    from sdeval.inputs.record import InputItem
    from sdeval.metrics.base import GroupMetric, ImageMetric
    from sdeval.metrics.set_base import FeatureSet, SetMetric
    from sdeval.pipeline.sharding import DistContext, Shard

DEFAULT_METRICS = ("fid", "kid")


@dataclass(frozen=True)
class EvalResult:
    """What ``eval_set`` found: per-image rows (rank 0), set values, fired ``fail_if`` rules."""

    rows: list[dict[str, Any]]
    #: metric name -> the number ``fail_if`` rules compare (set value, or per-image mean)
    values: Mapping[str, float | None]
    #: set metric name -> value, details and warnings
    set_metrics: Mapping[str, Any]
    #: reasons of the ``fail_if`` rules that hold
    failures: tuple[str, ...]
    summary: Mapping[str, Any]
    columns: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    out_dir: Path | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def table(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(self.columns))


@dataclass(frozen=True)
class SetFeatures:
    """The set metrics' features: one extractor per id and what each side keeps of it."""

    extractors: Mapping[str, "FeatureExtractor"] = field(default_factory=dict)
    keeps: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def sets(self) -> dict[str, "FeatureSet"]:
        from sdeval.metrics.set_base import FeatureSet

        return {fid: FeatureSet(fid, "stats" in k, "bank" in k) for fid, k in self.keeps.items()}


def parse_metric_names(metrics: Sequence[str] | str | None) -> list[str]:
    if metrics is None:
        return list(DEFAULT_METRICS)
    raw = metrics.split(",") if isinstance(metrics, str) else [m for part in metrics for m in str(part).split(",")]
    names = [m.strip() for m in raw if m.strip()]
    if not names:
        raise UsageError("no metrics given")
    return names


def parse_fail_if(conditions: Sequence[str], known: Sequence[str]) -> list["Rule"]:
    """Rules like ``fid > 50`` (the gate's rule syntax; the action part is ignored)."""
    from sdeval.gates.rules import parse_rule

    rules = []
    for text in conditions:
        try:
            rule = parse_rule(text, origin="--fail-if")
        except ValueError as exc:
            raise UsageError(f"--fail-if: {exc}") from exc
        rule = _canonical_rule(rule)
        if rule.metric not in known:
            raise UsageError(f"--fail-if {text!r}: metric '{rule.metric}' is not evaluated in this run "
                             f"(metrics: {', '.join(known)})")
        rules.append(rule)
    return rules


def _canonical_rule(rule: "Rule") -> "Rule":
    """The rule with its metric's canonical name (``clip`` -> ``clip_score``) when it is an alias."""
    from sdeval.metrics import registry

    try:
        name = registry.resolve(rule.metric)
    except Exception:  # noqa: BLE001 - unknown names are reported by parse_fail_if
        return rule
    return replace(rule, metric=name)


def feature_plan(set_metrics: Sequence["SetMetric"], options: Mapping[str, Any]) -> SetFeatures:
    """One extractor per feature the set metrics read, and the union of what they keep of it."""
    from sdeval.features.registry import create_extractor

    extractors: dict[str, FeatureExtractor] = {}
    keeps: dict[str, set[str]] = {}
    for m in set_metrics:
        if m.feature not in extractors:
            extractors[m.feature] = create_extractor(m.feature, options)
            keeps[m.feature] = set()
        keeps[m.feature].update(m.keeps)
    for ex in extractors.values():
        ex.check_available()
    return SetFeatures(extractors, {fid: frozenset(k) for fid, k in keeps.items()})


def diversity_groups(rows: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[str, list[str]]], dict[str, int]]:
    """(group key, paths) for groups of >= 2 readable images: manifest group, else prompt.

    When no image has a group or a prompt, the whole set is one group.
    """
    good = [r for r in rows if r.get("error") is None]
    keyed = [(r.get("group") or r.get("prompt"), r["path"]) for r in good]
    counts = {"images": len(good), "ungrouped": 0, "singletons": 0}
    if keyed and all(k is None for k, _ in keyed):
        keyed = [("(all images)", p) for _, p in keyed]
    groups: dict[str, list[str]] = {}
    for key, path in keyed:
        if key is None:
            counts["ungrouped"] += 1
            continue
        groups.setdefault(str(key), []).append(path)
    out = []
    for key in sorted(groups):
        if len(groups[key]) >= 2:
            out.append((key, groups[key]))
        else:
            counts["singletons"] += 1
    return out, counts


# -- what a run evaluates ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _EvalSpec:
    """What one run evaluates, decided before any image is read; the same on every rank."""

    names: tuple[str, ...]
    row_metrics: tuple["ImageMetric", ...]
    set_metrics: tuple["SetMetric", ...]
    group_metrics: tuple["GroupMetric", ...]
    features: SetFeatures
    rules: tuple["Rule", ...]
    options: RunOptions
    generated: tuple[str, ...]
    ref: str | None
    ref_stats: str | None

    def main_pass_extractors(self) -> list["FeatureExtractor"]:
        """The set features and, when cached, the group metrics' features: the main pass decodes
        each image once, and the group phase then reads those from the cache."""
        extra = list(self.features.extractors.values())
        if self.options.cache:
            extra += [ex for m in self.group_metrics for ex in m.feature_extractors() if ex.cache_key()]
        return extra


@dataclass(frozen=True)
class _RunContext:
    """Where and when this process runs, and whom it tells about progress."""

    ctx: "DistContext"
    started_at: datetime
    t0: float
    progress: ProgressFn | None
    reference_progress: ProgressFn | None


@dataclass(frozen=True)
class _StoredReference:
    """The reference side from ``--ref-stats`` (empty without it)."""

    sets: Mapping[str, "FeatureSet"] = field(default_factory=dict)
    entry: Mapping[str, Any] = field(default_factory=lambda: {"kind": None})
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Passes:
    """The merged passes (rank 0; ``generated`` is None on the other ranks) and what discovery found."""

    generated: "Shard | None"
    reference: "Shard | None"
    found: "Discovery"
    ref_found: "Discovery | None"


def eval_set(generated: Sequence[str] | str, *, ref: str | None = None, ref_stats: str | None = None,
             metrics: Sequence[str] | str | None = None, fail_if: Sequence[str] = (),
             options: RunOptions | None = None, out_dir: str | Path | None = None,
             progress: ProgressFn | None = None, reference_progress: ProgressFn | None = None,
             distributed: bool | str = "auto") -> EvalResult:
    """Evaluate ``generated`` (folders, globs, files, manifests) against ``ref`` or ``ref_stats``.

    ``metrics``: names or a comma list (default fid,kid); set-level (fid, kid, cmmd, clip_fid),
    group (lpips_diversity) and per-image (clip_score, aesthetic, lpips_ref, ...) mix freely.
    ``fail_if``: rules such as ``"fid > 50"``; a rule on a per-image metric compares its mean, and
    a rule whose metric has no value holds (a check that cannot run must not pass).
    Under torchrun the inputs are sharded over ranks and the results gathered on rank 0 (only
    rank 0 writes ``out_dir`` and gets the rows; every rank gets the values and the summary).
    """
    from sdeval.pipeline import sharding

    started_at, t0 = datetime.now(timezone.utc), time.perf_counter()
    spec = _spec(generated, ref, ref_stats, metrics, fail_if, options or RunOptions(), distributed)
    stored = _stored_reference(spec)
    ctx = sharding.init(distributed)
    run = _RunContext(ctx, started_at, t0, progress, reference_progress)
    try:
        passes = _run_passes(spec, run)
        groups = {m.name: _group_entry(m, spec, passes, ctx) for m in spec.group_metrics}
        out = Path(out_dir) if out_dir is not None else None
        return _shared_result(ctx, lambda: _main_result(spec, run, passes, stored, groups, out))
    except BaseException:
        ctx.close(clean=False)  # no barrier: the other ranks may be waiting in another collective
        raise
    finally:
        ctx.close()


def _spec(generated: Sequence[str] | str, ref: str | None, ref_stats: str | None,
          metrics: Sequence[str] | str | None, fail_if: Sequence[str], options: RunOptions,
          distributed: bool | str) -> _EvalSpec:
    """Names resolved and sorted by kind, metrics built, the options every rank runs with."""
    from sdeval.metrics import registry
    from sdeval.metrics.base import ROW_KINDS
    from sdeval.pipeline.run import build_metrics

    names = list(dict.fromkeys(registry.resolve(n) for n in parse_metric_names(metrics)))
    kinds = {n: registry.get_class(n).kind for n in names}
    rules = parse_fail_if(list(fail_if), names)
    if ref and ref_stats:
        raise UsageError("give either --ref DIR or --ref-stats NAME, not both")
    set_classes = {n: cast("type[SetMetric]", registry.get_class(n)) for n in names if kinds[n] == "set"}
    needing = [n for n, cls in set_classes.items() if cls.needs_reference]
    if needing and not (ref or ref_stats):
        raise UsageError(f"{', '.join(needing)} compare against a reference: give --ref DIR or --ref-stats NAME "
                         f"(build stored statistics with `sdeval stats build DIR --name NAME`)")
    gen_paths = tuple(str(p) for p in ([generated] if isinstance(generated, (str, Path)) else generated))
    mo = _metric_options(options, distributed, pairs=any(kinds[n] == "pair" for n in names), ref=ref,
                         generated=gen_paths)
    groups = [cast("GroupMetric", registry.create(n, mo)) for n in names if kinds[n] == "group"]
    for m in groups:
        for ex in m.feature_extractors():
            ex.check_available()
    set_metrics = [cls(mo) for cls in set_classes.values()]
    return _EvalSpec(names=tuple(names), row_metrics=tuple(build_metrics([n for n in names if kinds[n] in ROW_KINDS],
                                                                         mo)),
                     set_metrics=tuple(set_metrics), group_metrics=tuple(groups),
                     features=feature_plan(set_metrics, mo), rules=tuple(rules),
                     options=replace(options, metric_options=mo), generated=gen_paths, ref=ref, ref_stats=ref_stats)


def _metric_options(options: RunOptions, distributed: bool | str, *, pairs: bool, ref: str | None,
                    generated: Sequence[str]) -> dict[str, Any]:
    """The run's metric options plus this rank's device and, for pair metrics, where references are."""
    from sdeval.pipeline import sharding

    mo = dict(options.metric_options)
    device = sharding.rank_device(mo.get("device"), distributed)
    if device:
        mo["device"] = device
    if pairs:
        if ref:
            mo.setdefault("lpips_ref_dir", str(ref))
        mo.setdefault("lpips_generated_roots", [p for p in generated if Path(p).is_dir()])
    return mo


def _stored_reference(spec: _EvalSpec) -> _StoredReference:
    """``--ref-stats``: stored statistics, checked to be made like this run's features."""
    if not spec.ref_stats or not spec.features.extractors:
        return _StoredReference()
    from sdeval.evaluate.reference_stats import reference_sets

    return _StoredReference(*reference_sets(spec.ref_stats, spec.features.extractors, spec.features.keeps,
                                            spec.options.metric_options, kid="kid" in spec.names))


# -- the passes -------------------------------------------------------------------------------------------

def _run_passes(spec: _EvalSpec, run: _RunContext) -> _Passes:
    """This rank's share of the generated (and reference) images, then the shards merged on rank 0."""
    from sdeval.inputs.discovery import discover
    from sdeval.pipeline.sharding import gather_shards

    ctx = run.ctx
    found = discover(list(spec.generated))
    shards = {"generated": _pass(ctx.shard(found.items), spec.row_metrics, spec.main_pass_extractors(),
                                 spec.features, spec.options, run.progress if ctx.is_main else None, keep_rows=True)}
    ref_found = None
    if spec.ref and spec.features.extractors:
        ref_found = discover([str(spec.ref)])
        shards["reference"] = _pass(ctx.shard(ref_found.items), (), list(spec.features.extractors.values()),
                                    spec.features, spec.options, run.reference_progress if ctx.is_main else None,
                                    keep_rows=False)
    merged = gather_shards(ctx, shards)
    if merged is None:
        return _Passes(None, None, found, ref_found)
    return _Passes(merged["generated"], merged.get("reference"), found, ref_found)


def _pass(items: Sequence["InputItem"], metrics: Sequence["ImageMetric"], extractors: Sequence["FeatureExtractor"],
          features: SetFeatures, options: RunOptions, progress: ProgressFn | None, *, keep_rows: bool) -> "Shard":
    """One pass of the pipeline: rows (when kept) and the set features streamed into their sets."""
    from sdeval.pipeline.run import iter_rows
    from sdeval.pipeline.sharding import Shard

    sets = features.sets()
    stats = RunStats()

    def sink(feature_id: str, records: Sequence[Any], feats: Sequence[Any]) -> None:
        fs = sets.get(feature_id)
        if fs is not None:
            fs.add([r.path for r in records], feats)

    rows = []
    for row in iter_rows(items, metrics, options, progress, stats, extra_extractors=extractors, feature_sink=sink):
        if keep_rows:
            rows.append(row)
    return Shard(rows, sets, stats)


def _group_entry(metric: "GroupMetric", spec: _EvalSpec, passes: _Passes, ctx: "DistContext"
                 ) -> dict[str, Any] | None:
    """A group metric's summary entry (rank 0): groups from rank 0's rows, spread round-robin over ranks.

    A group's value is cached under its members' content hashes, so a rerun over unchanged prompt
    groups reads no image; the other groups' members go through the run's loader and cache.
    """
    from sdeval.inputs.record import InputItem
    from sdeval.metrics.base import GroupValue
    from sdeval.pipeline.run import iter_group_features, open_cache

    rows = passes.generated.rows if passes.generated is not None else None
    groups, counts, shas = ctx.broadcast(
        (*diversity_groups(rows), {r["path"]: r["sha256"] for r in rows if r.get("sha256")})
        if rows is not None else None)
    mine = [(key, *metric.select(key, paths)) for key, paths in groups[ctx.rank::ctx.world_size]]
    (extractor,) = metric.feature_extractors()
    fkey = metric.group_cache_key() if spec.options.cache else None
    ckeys = {key: _group_content_key(key, chosen, shas) for key, chosen, _ in mine}
    cache = open_cache(spec.options)
    stats = RunStats()
    try:
        hits = cache.get_many([k for k in ckeys.values() if k], fkey) if fkey else {}
        todo = [m for m in mine if ckeys[m[0]] not in hits]
        features = iter_group_features(((key, [InputItem(path=p) for p in chosen]) for key, chosen, _ in todo),
                                       extractor, spec.options, stats)
        computed = {key: metric.group_value(key, feats, errors, sampled)
                    for (key, _, sampled), (_, feats, errors) in zip(todo, features)}
        if fkey:
            cache.put_many(fkey, {ckeys[k]: asdict(v) for k, v in computed.items() if ckeys[k]})
    finally:
        stats.cache_problems.extend(getattr(cache, "problems", []))
        cache.close()
    values = [computed[key] if key in computed else GroupValue(**hits[ckeys[key]]) for key, _, _ in mine]
    gathered = ctx.gather({"values": values, "stats": stats.state(), "group_hits": len(mine) - len(todo)})
    if gathered is None:
        return None
    entry = metric.summarize([v for part in gathered for v in part["values"]], counts)
    merged = RunStats.merged([part["stats"] for part in gathered])
    hits_n, computed_n = merged.features.get(extractor.id, [0, 0])
    group_hits = sum(part["group_hits"] for part in gathered)
    return {**entry, "features": {extractor.id: {"cache_hits": hits_n, "computed": computed_n}},
            "group_cache": {"cache_hits": group_hits, "computed": len(groups) - group_hits}}


def _group_content_key(key: str, members: Sequence[str], shas: Mapping[str, str]) -> str | None:
    """The group key and its chosen members' content, in order (None when one has no hash)."""
    import hashlib

    if any(p not in shas for p in members):
        return None
    return hashlib.sha256("\n".join([key, *(shas[p] for p in members)]).encode("utf-8", "surrogatepass")).hexdigest()


# -- rank 0: values, summary, result folder -----------------------------------------------------------------

def _shared_result(ctx: "DistContext", make: Callable[[], EvalResult]) -> EvalResult:
    """Rank 0 makes the result; every rank gets its values and summary (or rank 0's error)."""
    result: EvalResult | None = None
    if ctx.is_main:
        try:
            result = make()
        except Exception as exc:
            if ctx.world_size == 1:
                raise
            ctx.broadcast({"failure": _failure(exc)})
            raise
    shared = ctx.broadcast(None if result is None else
                           {k: getattr(result, k) for k in ("values", "set_metrics", "failures", "summary",
                                                            "columns", "warnings", "out_dir")})
    if shared is not None and "failure" in shared:
        raise remote_error(shared["failure"])
    return result if result is not None else EvalResult(rows=[], **shared)


class RemoteError(UsageError):
    """Rank 0 failed after the gather with a usage, config or input error (exit 2)."""


class RemoteInternalError(SdevalError):
    """Rank 0 failed after the gather with an internal error (exit 3)."""

    exit_code = EXIT_INTERNAL


def remote_error(failure: Mapping[str, Any]) -> SdevalError:
    """What the other ranks raise for rank 0's failure: a class whose exit code is rank 0's."""
    cls = RemoteInternalError if int(failure["exit_code"]) == EXIT_INTERNAL else RemoteError
    return cls(f"rank 0 failed: {failure['message']}")


def _failure(exc: BaseException) -> dict[str, Any]:
    code = exc.exit_code if isinstance(exc, SdevalError) else EXIT_INTERNAL
    return {"message": f"{type(exc).__name__}: {exc}", "exit_code": code}


def _set_values(spec: _EvalSpec, passes: _Passes, stored: _StoredReference,
                groups: Mapping[str, Any]) -> dict[str, Any]:
    """Every set and group metric's entry, in the order the metrics were asked for."""
    from sdeval.metrics.set_base import FeatureSet

    assert passes.generated is not None
    ref_sets = passes.reference.sets if passes.reference is not None else stored.sets
    by_name: dict[str, Any] = dict(groups)
    for m in spec.set_metrics:
        reference = ref_sets.get(m.feature) or FeatureSet(m.feature, keep_stats=False, keep_bank=False)
        by_name[m.name] = m.value(passes.generated.sets[m.feature], reference).as_dict()
    return {name: by_name[name] for name in spec.names if name in by_name}


def _reference_entry(spec: _EvalSpec, passes: _Passes, stored: _StoredReference) -> dict[str, Any]:
    if passes.reference is None or passes.ref_found is None:
        return dict(stored.entry)
    stats = passes.reference.stats
    return {"kind": "dir", "path": str(spec.ref), "images": stats.images, "errors": stats.errors,
            "skipped_non_images": dict(passes.ref_found.skipped)}


def _warnings(passes: _Passes, stored: _StoredReference, set_values: Mapping[str, Any]) -> list[str]:
    from sdeval.metrics import registry

    warnings = list(stored.warnings)
    for entry in set_values.values():
        warnings.extend(w for w in entry.get("warnings", []) if w not in warnings)
    if passes.reference is not None and passes.reference.stats.errors:
        warnings.append(f"{passes.reference.stats.errors} reference image(s) could not be read and were left out")
    assert passes.generated is not None
    if passes.generated.stats.errors:
        warnings.append(f"{passes.generated.stats.errors} generated image(s) could not be read and were left out")
    warnings.extend(p.message for p in registry.plugin_problems() if p.message not in warnings)
    return warnings


def _fail_if(rules: Sequence["Rule"], values: Mapping[str, float | None]) -> tuple[list[str], list[dict[str, Any]]]:
    """(reasons of the rules that hold, every rule's check); a rule on a metric without value holds."""
    failures, checks = [], []
    for rule in rules:
        v = values.get(rule.metric)
        fired = True if v is None else rule.fires(v)
        text = (f"{rule.metric} has no value (cannot check {rule.metric} {rule.op} {rule.threshold:g})"
                if v is None else f"{rule.metric} {v:.6g} {rule.op} {rule.threshold:g}")
        checks.append({"rule": f"{rule.metric} {rule.op} {rule.threshold:g}", "value": v, "fired": fired})
        if fired:
            failures.append(text)
    return failures, checks


def _protocol(spec: _EvalSpec, world_size: int) -> dict[str, Any]:
    from sdeval.pipeline.run import extractors_of, protocol_of

    extractors = extractors_of(spec.row_metrics) + spec.main_pass_extractors()
    protocol = protocol_of(spec.row_metrics, list({ex.id: ex for ex in extractors}.values()), spec.options)
    kept = {m.name: m for m in (*spec.set_metrics, *spec.group_metrics)}
    protocol["set_metrics"] = {name: kept[name].protocol() for name in spec.names if name in kept}
    protocol["distributed"] = {"world_size": world_size}
    return protocol


def _main_result(spec: _EvalSpec, run: _RunContext, passes: _Passes, stored: _StoredReference,
                 groups: Mapping[str, Any], out_dir: Path | None) -> EvalResult:
    """Rank 0's share: set values, fail_if, summary, result folder."""
    assert passes.generated is not None
    rows, gen_run = passes.generated.rows, passes.generated.stats
    ref_run = passes.reference.stats if passes.reference is not None else RunStats()
    set_values = _set_values(spec, passes, stored, groups)
    warnings = _warnings(passes, stored, set_values)
    image_names = [m.name for m in spec.row_metrics]
    described = metric_stats(rows, image_names)
    values: dict[str, float | None] = {name: v.get("value") for name, v in set_values.items()}
    values.update({name: described[name].get("mean") for name in image_names})
    failures, checks = _fail_if(spec.rules, values)
    seconds = time.perf_counter() - run.t0
    summary = {
        "schema_version": SCHEMA_VERSION,
        "command": "eval",
        "started_at": run.started_at.isoformat(timespec="seconds"),
        "passed": not failures,
        "fail_if": checks,
        "failures": failures,
        "images": len(rows),
        "errors": sum(1 for r in rows if r.get("error") is not None),
        "values": values,
        "set_metrics": dict(set_values),
        "metrics": described,
        "warnings": list(warnings),
        "inputs": {"skipped_non_images": dict(passes.found.skipped), "manifests": list(passes.found.manifests),
                   "duplicates": [{"path": r["path"], "duplicate_of": r["duplicate_of"]}
                                  for r in rows if r.get("duplicate_of")]},
        "reference": _reference_entry(spec, passes, stored),
        "protocol": _protocol(spec, run.ctx.world_size),
        "features": _feature_counts(gen_run),
        "reference_features": _feature_counts(ref_run),
        "cache_problems": list(gen_run.cache_problems) + list(ref_run.cache_problems),
        "timing": {"seconds": round(seconds, 3), "pipeline_seconds": round(gen_run.seconds, 3),
                   "reference_seconds": round(ref_run.seconds, 3),
                   "images_per_second": round((len(rows) + ref_run.images) / seconds, 2) if seconds > 0 else None},
    }
    result = EvalResult(rows=rows, values=values, set_metrics=dict(set_values), failures=tuple(failures),
                        summary=summary, columns=eval_columns(image_names), warnings=tuple(warnings))
    return write_eval_folder(result, out_dir) if out_dir is not None else result


def _feature_counts(stats: RunStats) -> dict[str, dict[str, int]]:
    return {fid: {"cache_hits": h, "computed": c} for fid, (h, c) in stats.features.items()}


def write_eval_folder(result: EvalResult, out_dir: Path) -> EvalResult:
    """results.jsonl, results.csv and summary.json (atomic), as the gate writes them."""
    from sdeval.results.files import write_result_files

    summary = write_result_files(out_dir, result.rows, result.columns, result.summary, SCHEMA_VERSION)
    return replace(result, out_dir=out_dir, summary=summary)


# -- reference statistics ------------------------------------------------------------------------------

def build_stats(paths: Sequence[str] | str, name: str, *, metrics: Sequence[str] | str | None = None,
                options: RunOptions | None = None, overwrite: bool = False,
                progress: ProgressFn | None = None, distributed: bool | str = "auto") -> Any:
    """Reduce a reference folder to what ``metrics`` need and store it as ``name``.

    Returns the stored :class:`~sdeval.evaluate.reference_stats.ReferenceStats` (on every rank).
    """
    from sdeval.evaluate import reference_stats as stats_store
    from sdeval.inputs.discovery import discover
    from sdeval.pipeline import sharding

    stats_store.check_name(name)
    options = options or RunOptions()
    set_metrics = _reference_metrics(metrics, options, distributed)
    options = replace(options, metric_options=set_metrics[0].options)
    if not overwrite and (stats_store.stats_dir() / f"{name}.json").exists():
        raise UsageError(f"reference statistics '{name}' already exist; use --overwrite to replace them")
    features = feature_plan(set_metrics, options.metric_options)
    path_list = [str(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    found = discover(path_list)
    ctx = sharding.init(distributed)
    try:
        shard = _pass(ctx.shard(found.items), (), list(features.extractors.values()), features, options,
                      progress if ctx.is_main else None, keep_rows=False)
        merged = sharding.gather_shards(ctx, {"reference": shard})
        stored = None
        if merged is not None:
            stored = _save_stats(name, merged["reference"], features, path_list,
                                 [m.name for m in set_metrics], overwrite)
        ok = ctx.broadcast(stored is not None if ctx.is_main else None)
        if not ctx.is_main and ok:
            stored = stats_store.load(name)
        return stored
    except BaseException:
        ctx.close(clean=False)  # no barrier: the other ranks may be waiting in another collective
        raise
    finally:
        ctx.close()


def _reference_metrics(metrics: Sequence[str] | str | None, options: RunOptions,
                       distributed: bool | str) -> list["SetMetric"]:
    """The set metrics that compare against a reference, built with this rank's device."""
    from sdeval.metrics import registry
    from sdeval.pipeline import sharding

    mo = dict(options.metric_options)
    device = sharding.rank_device(mo.get("device"), distributed)
    if device:
        mo["device"] = device
    out = []
    for n in dict.fromkeys(registry.resolve(n) for n in parse_metric_names(metrics)):
        cls = registry.get_class(n)
        if cls.kind != "set" or not cast("type[SetMetric]", cls).needs_reference:
            raise UsageError(f"'{n}' does not compare against reference statistics (use fid, kid, cmmd, clip_fid)")
        out.append(cast("SetMetric", cls(mo)))
    return out


def _save_stats(name: str, shard: "Shard", features: SetFeatures, paths: Sequence[str], metric_names: Sequence[str],
                overwrite: bool) -> Any:
    from sdeval.core.errors import InputError
    from sdeval.evaluate import reference_stats as stats_store

    for fs in shard.sets.values():
        if fs.n < 2:
            raise InputError(f"only {fs.n} readable image(s) in {', '.join(paths)}: statistics need at least 2")
    stored = {fid: stats_store.stored_feature_from_set(fs, features.extractors[fid].identity())
              for fid, fs in shard.sets.items()}
    source = {"paths": list(paths), "images": shard.stats.images, "errors": shard.stats.errors,
              "metrics": list(metric_names),
              "protocol": {fid: ex.protocol() for fid, ex in features.extractors.items()}}
    return stats_store.save(name, stored, source, overwrite=overwrite)
