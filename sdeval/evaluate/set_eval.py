"""``sdeval eval``: how far a generated set is from a reference, and how diverse it is.

One pass over the generated images computes every per-image metric (clip_score, aesthetic,
lpips_ref...) and streams the features the set-level metrics need (Inception for FID/KID, CLIP
for CMMD/CLIP-FID) into float64 moments and float32 banks; one pass over a reference folder does
the same (or stored statistics stand in for it). Features come from the shared content-addressed
cache, so a nightly rerun over a mostly unchanged folder recomputes almost nothing.
``lpips_diversity`` then runs group-wise (it needs the prompt groups, known only after the pass).

The result folder is the gate's: ``results.jsonl``/``results.csv`` (one row per generated image)
and ``summary.json`` (set-level values, per-image distributions, warnings, the protocol).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from sdeval.core.errors import UsageError
from sdeval.pipeline.rows import SCHEMA_VERSION
from sdeval.pipeline.run import ProgressFn, RunOptions, RunStats
from sdeval.results.schema import eval_columns
from sdeval.results.summary import metric_stats

if TYPE_CHECKING:
    import pandas as pd

    from sdeval.pipeline.sharding import DistContext
    from sdeval.metrics.set_base import FeatureSet

DEFAULT_METRICS = ("fid", "kid")
LOWEST_GROUPS = 20


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


@dataclass
class _Plan:
    """The set metrics' features: one extractor per id and what each side keeps of it."""

    extractors: dict[str, Any] = field(default_factory=dict)
    keeps: dict[str, set[str]] = field(default_factory=dict)

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


def parse_fail_if(conditions: Sequence[str], known: Sequence[str]) -> list[Any]:
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


def _canonical_rule(rule: Any) -> Any:
    """The rule with its metric's canonical name (``clip`` -> ``clip_score``) when it is an alias."""
    from sdeval.metrics import registry

    try:
        name = registry.resolve(rule.metric)
    except Exception:  # noqa: BLE001 - unknown names are reported by parse_fail_if
        return rule
    return replace(rule, metric=name)


def feature_plan(set_metrics: Sequence[Any], options: Mapping[str, Any]) -> _Plan:
    from sdeval.features.registry import create_extractor

    plan = _Plan()
    for m in set_metrics:
        if not m.feature:
            continue
        if m.feature not in plan.extractors:
            plan.extractors[m.feature] = create_extractor(m.feature, options)
            plan.keeps[m.feature] = set()
        plan.keeps[m.feature].update(m.keeps)
    for ex in plan.extractors.values():
        ex.check_available()
    return plan


def _sink(sets: Mapping[str, "FeatureSet"]) -> Any:
    def sink(feature_id: str, records: Sequence[Any], feats: Sequence[Any]) -> None:
        fs = sets.get(feature_id)
        if fs is not None:
            fs.add([r.path for r in records], feats)
    return sink


def _merge_run_stats(parts: Sequence[Mapping[str, Any]]) -> RunStats:
    total = RunStats()
    for p in parts:
        total.images += p["images"]
        total.errors += p["errors"]
        total.seconds = max(total.seconds, p["seconds"])
        total.cache_problems.extend(p["cache_problems"])
        for fid, (hits, computed) in p["features"].items():
            acc = total.features.setdefault(fid, [0, 0])
            acc[0] += hits
            acc[1] += computed
    return total


def _run_stats_state(s: RunStats) -> dict[str, Any]:
    return {"images": s.images, "errors": s.errors, "seconds": s.seconds, "cache_problems": list(s.cache_problems),
            "features": {k: list(v) for k, v in s.features.items()}}


def _mark_duplicates(rows: list[dict[str, Any]]) -> int:
    first: dict[str, str] = {}
    n = 0
    for row in rows:
        sha = row.get("sha256")
        row["duplicate_of"] = None
        if sha:
            if sha in first:
                row["duplicate_of"] = first[sha]
                n += 1
            else:
                first[sha] = row["path"]
    return n


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


def _diversity(metric: Any, runner: Any, rows: list[dict[str, Any]] | None, ctx: "DistContext",
               options: RunOptions) -> dict[str, Any] | None:
    """Mean pairwise LPIPS per group, groups spread round-robin over ranks; the summary entry on rank 0."""
    plan = ctx.broadcast(diversity_groups(rows) if ctx.is_main else None)
    groups, counts = plan
    mine = groups[ctx.rank::ctx.world_size]
    results = runner.run(mine, workers=options.workers, max_pixels=options.decode.max_pixels)
    gathered = ctx.gather([r.__dict__ for r in results])
    if not ctx.is_main:
        return None
    per_group = sorted((g for part in gathered or [] for g in part), key=lambda g: g["key"])
    scored = [g for g in per_group if g["mean"] is not None]
    warnings = []
    if not scored:
        warnings.append("lpips_diversity: no prompt group has 2 or more readable images (group = manifest "
                        "'group', else the prompt)")
    if counts["ungrouped"]:
        warnings.append(f"lpips_diversity: {counts['ungrouped']} image(s) without a group or prompt were left out")
    value = sum(g["mean"] for g in scored) / len(scored) if scored else None
    lowest = sorted(scored, key=lambda g: g["mean"])[:LOWEST_GROUPS]
    return {"value": value, "groups": len(scored), "singletons": counts["singletons"],
            "images": sum(g["images"] for g in scored), "pairs": sum(g["pairs"] for g in scored),
            "sampled_groups": sum(1 for g in scored if g["sampled"]),
            "lowest_groups": [{"group": g["key"], "images": g["images"], "mean": g["mean"]} for g in lowest],
            "averaging": "mean over groups of each group's mean pairwise LPIPS", "warnings": warnings}


def eval_set(generated: Sequence[str] | str, *, ref: str | None = None, ref_stats: str | None = None,
             metrics: Sequence[str] | str | None = None, fail_if: Sequence[str] = (),
             options: RunOptions | None = None, out_dir: str | Path | None = None,
             progress: ProgressFn | None = None, reference_progress: ProgressFn | None = None,
             distributed: bool | str = "auto") -> EvalResult:
    """Evaluate ``generated`` (folders, globs, files, manifests) against ``ref`` or ``ref_stats``.

    ``metrics``: names or a comma list (default fid,kid); set-level (fid, kid, cmmd, clip_fid,
    lpips_diversity) and per-image (clip_score, aesthetic, lpips_ref, ...) mix freely.
    ``fail_if``: rules such as ``"fid > 50"``; a rule on a per-image metric compares its mean, and
    a rule whose metric has no value holds (a check that cannot run must not pass).
    Under torchrun the inputs are sharded over ranks and the results gathered on rank 0 (only
    rank 0 writes ``out_dir`` and gets the rows; every rank gets the values and the summary).
    """
    from sdeval.pipeline import sharding as dist_mod
    from sdeval.inputs.discovery import discover
    from sdeval.metrics import registry
    from sdeval.metrics.lpips_metrics import LpipsDiversity
    from sdeval.metrics.set_base import FeatureSet, SetMetric
    from sdeval.pipeline.run import build_metrics, iter_rows

    started_at = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    options = options or RunOptions()
    names = [registry.resolve(n) for n in dict.fromkeys(parse_metric_names(metrics))]
    names = list(dict.fromkeys(names))
    classes = {n: registry.get_class(n) for n in names}
    set_names = [n for n in names if issubclass(classes[n], SetMetric)]
    image_names = [n for n in names if n not in set_names]
    rules = parse_fail_if(list(fail_if), names)
    if ref and ref_stats:
        raise UsageError("give either --ref DIR or --ref-stats NAME, not both")
    needing = [n for n in set_names if classes[n].needs_reference]
    if needing and not (ref or ref_stats):
        raise UsageError(f"{', '.join(needing)} compare against a reference: give --ref DIR or --ref-stats NAME "
                         f"(build stored statistics with `sdeval stats build DIR --name NAME`)")
    gen_paths = [generated] if isinstance(generated, (str, Path)) else list(generated)
    gen_paths = [str(p) for p in gen_paths]
    mo = dict(options.metric_options)
    device = dist_mod.rank_device(mo.get("device"), distributed)
    if device:
        mo["device"] = device
    if "lpips_ref" in image_names:
        if ref:
            mo.setdefault("lpips_ref_dir", str(ref))
        mo.setdefault("lpips_generated_roots", [p for p in gen_paths if Path(p).is_dir()])
    options = replace(options, metric_options=mo)

    set_metrics = [registry.create(n, mo) for n in set_names]
    image_metrics = build_metrics(image_names, mo)
    plan = feature_plan(set_metrics, mo)
    diversity = next((m for m in set_metrics if isinstance(m, LpipsDiversity)), None)
    runner = diversity.runner() if diversity is not None else None
    if runner is not None:
        runner.check_available()

    warnings: list[str] = []
    ref_sets: dict[str, FeatureSet] = {}
    reference: dict[str, Any] = {"kind": None}
    if ref_stats and plan.extractors:
        from sdeval.evaluate import reference_stats as stats_store

        if ref_stats.startswith(stats_store.CLEANFID_PREFIX):
            stored = stats_store.load_cleanfid(ref_stats, mode=str(mo.get("fid_mode") or "clean"),
                                               offline=mo.get("offline"), kid="kid" in set_names)
        else:
            stored = stats_store.load(ref_stats, offline=mo.get("offline"))
        for fid, ex in plan.extractors.items():
            if fid not in stored.features:
                raise UsageError(f"reference statistics '{ref_stats}' have no {fid} features (they hold "
                                 f"{', '.join(stored.features) or 'none'}); rebuild them with the metrics you need")
            warnings += stats_store.check_identity(stored.features[fid], ex.identity(), ref_name=ref_stats)
            ref_sets[fid] = stats_store.feature_set_of(stored.features[fid], sorted(plan.keeps[fid]),
                                                       ref_name=ref_stats)
        reference = {"kind": "stats", **stored.as_dict()}

    ctx = dist_mod.init(distributed)
    try:
        found = discover(gen_paths)
        gen_sets = plan.sets()
        gen_run = RunStats()
        rows = list(iter_rows(ctx.shard(found.items), image_metrics, options, progress if ctx.is_main else None,
                              gen_run, extra_extractors=list(plan.extractors.values()),
                              feature_sink=_sink(gen_sets)))
        ref_run = RunStats()
        ref_found = None
        if ref and plan.extractors:
            ref_found = discover([str(ref)])
            ref_sets = plan.sets()
            for _ in iter_rows(ctx.shard(ref_found.items), [], options,
                               reference_progress if ctx.is_main else None, ref_run,
                               extra_extractors=list(plan.extractors.values()), feature_sink=_sink(ref_sets)):
                pass
        if ctx.world_size > 1:
            payload = {"rows": rows, "gen": {k: v.state() for k, v in gen_sets.items()},
                       "ref": {k: v.state() for k, v in ref_sets.items()} if ref_found is not None else None,
                       "gen_run": _run_stats_state(gen_run), "ref_run": _run_stats_state(ref_run)}
            gathered = ctx.gather(payload)
            if ctx.is_main:
                assert gathered is not None
                rows = [r for part in gathered for r in part["rows"]]
                gen_sets = {k: FeatureSet.from_state(gathered[0]["gen"][k]) for k in gen_sets}
                for part in gathered[1:]:
                    for k in gen_sets:
                        gen_sets[k].merge(FeatureSet.from_state(part["gen"][k]))
                if ref_found is not None:
                    ref_sets = {k: FeatureSet.from_state(gathered[0]["ref"][k]) for k in ref_sets}
                    for part in gathered[1:]:
                        for k in ref_sets:
                            ref_sets[k].merge(FeatureSet.from_state(part["ref"][k]))
                gen_run = _merge_run_stats([p["gen_run"] for p in gathered])
                ref_run = _merge_run_stats([p["ref_run"] for p in gathered])
            else:
                rows = []
        div = _diversity(diversity, runner, rows, ctx, options) if runner is not None else None

        result: EvalResult | None = None
        if ctx.is_main:
            try:
                result = _main_result(rows, set_metrics, diversity, div, gen_sets, ref_sets, ref_found, ref, ref_run,
                                      gen_run, reference, warnings, image_metrics, rules, found, plan, runner,
                                      options, started_at, t0, ctx, out_dir)
            except Exception as exc:
                if ctx.world_size == 1:
                    raise
                ctx.broadcast({"failure": _failure(exc)})
                raise
        shared = ctx.broadcast(None if result is None else
                               {k: getattr(result, k) for k in ("values", "set_metrics", "failures", "summary",
                                                                "columns", "warnings", "out_dir")})
        if shared is not None and "failure" in shared:
            raise RemoteError(shared["failure"])
        return result if result is not None else EvalResult(rows=[], **shared)
    except BaseException:
        ctx.close(clean=False)  # no barrier: the other ranks may be waiting in another collective
        raise
    finally:
        ctx.close()


class RemoteError(UsageError):
    """Rank 0 failed after the gather; the other ranks report its error with its exit code."""

    def __init__(self, failure: Mapping[str, Any]) -> None:
        super().__init__(f"rank 0 failed: {failure['message']}")
        self.exit_code = int(failure["exit_code"])


def _failure(exc: BaseException) -> dict[str, Any]:
    from sdeval.core.errors import EXIT_INTERNAL, SdevalError

    code = exc.exit_code if isinstance(exc, SdevalError) else EXIT_INTERNAL
    return {"message": f"{type(exc).__name__}: {exc}", "exit_code": code}


def _main_result(rows: list[dict[str, Any]], set_metrics: Sequence[Any], diversity: Any, div: Any,
                 gen_sets: Mapping[str, Any], ref_sets: Mapping[str, Any], ref_found: Any, ref: Any,
                 ref_run: RunStats, gen_run: RunStats, reference: dict[str, Any], warnings: list[str],
                 image_metrics: Sequence[Any], rules: Sequence[Any], found: Any, plan: _Plan, runner: Any,
                 options: RunOptions, started_at: datetime, t0: float, ctx: "DistContext",
                 out_dir: str | Path | None) -> EvalResult:
    """Rank 0's share: set values, fail_if, summary, result folder."""
    gen_run.duplicates = _mark_duplicates(rows)
    set_values: dict[str, Any] = {}
    for m in set_metrics:
        if m is diversity:
            assert div is not None
            set_values[m.name] = div
            continue
        sv = m.value(gen_sets[m.feature], ref_sets[m.feature])
        set_values[m.name] = sv.as_dict()
    for entry in set_values.values():
        warnings.extend(w for w in entry.get("warnings", []) if w not in warnings)
    if ref_found is not None:
        reference = {"kind": "dir", "path": str(ref), "images": ref_run.images, "errors": ref_run.errors,
                     "skipped_non_images": dict(ref_found.skipped)}
        if ref_run.errors:
            warnings.append(f"{ref_run.errors} reference image(s) could not be read and were left out")
    if gen_run.errors:
        warnings.append(f"{gen_run.errors} generated image(s) could not be read and were left out")
    result = _finish(rows, image_metrics, set_metrics, set_values, rules, warnings, found, gen_run, ref_run,
                     reference, plan, runner, options, started_at, time.perf_counter() - t0, ctx)
    if out_dir is not None:
        result = write_eval_folder(result, Path(out_dir))
    return result


def _finish(rows: list[dict[str, Any]], image_metrics: Sequence[Any], set_metrics: Sequence[Any],
            set_values: Mapping[str, Any], rules: Sequence[Any], warnings: list[str], found: Any,
            gen_run: RunStats, ref_run: RunStats, reference: Mapping[str, Any], plan: _Plan, runner: Any,
            options: RunOptions, started_at: datetime, seconds: float, ctx: "DistContext") -> EvalResult:
    from sdeval.pipeline.run import extractors_of, protocol_of

    image_names = [m.name for m in image_metrics]
    described = metric_stats(rows, image_names)
    values: dict[str, float | None] = {name: v.get("value") for name, v in set_values.items()}
    for name in image_names:
        values[name] = described[name].get("mean")
    failures = []
    checks = []
    for rule in rules:
        v = values.get(rule.metric)
        fired = True if v is None else rule.fires(v)
        text = (f"{rule.metric} has no value (cannot check {rule.metric} {rule.op} {rule.threshold:g})"
                if v is None else f"{rule.metric} {v:.6g} {rule.op} {rule.threshold:g}")
        checks.append({"rule": f"{rule.metric} {rule.op} {rule.threshold:g}", "value": v, "fired": fired})
        if fired:
            failures.append(text)
    extractors = extractors_of(image_metrics) + list(plan.extractors.values())
    protocol = protocol_of(image_metrics, extractors, options)
    protocol["set_metrics"] = {m.name: m.protocol() for m in set_metrics}
    if runner is not None:
        protocol["set_metrics"]["lpips_diversity"].update(runner.protocol())
    protocol["distributed"] = {"world_size": ctx.world_size}
    columns = eval_columns(image_names)
    duplicates = [{"path": r["path"], "duplicate_of": r["duplicate_of"]} for r in rows if r.get("duplicate_of")]
    features = {fid: {"cache_hits": h, "computed": c} for fid, (h, c) in gen_run.features.items()}
    ref_features = {fid: {"cache_hits": h, "computed": c} for fid, (h, c) in ref_run.features.items()}
    summary = {
        "schema_version": SCHEMA_VERSION,
        "command": "eval",
        "started_at": started_at.isoformat(timespec="seconds"),
        "passed": not failures,
        "fail_if": checks,
        "failures": failures,
        "images": len(rows),
        "errors": sum(1 for r in rows if r.get("error") is not None),
        "values": values,
        "set_metrics": dict(set_values),
        "metrics": described,
        "warnings": list(warnings),
        "inputs": {"skipped_non_images": dict(found.skipped), "manifests": list(found.manifests),
                   "duplicates": duplicates},
        "reference": dict(reference),
        "protocol": protocol,
        "features": features,
        "reference_features": ref_features,
        "cache_problems": list(gen_run.cache_problems) + list(ref_run.cache_problems),
        "timing": {"seconds": round(seconds, 3), "pipeline_seconds": round(gen_run.seconds, 3),
                   "reference_seconds": round(ref_run.seconds, 3),
                   "images_per_second": round((len(rows) + ref_run.images) / seconds, 2) if seconds > 0 else None},
    }
    return EvalResult(rows=rows, values=values, set_metrics=dict(set_values), failures=tuple(failures),
                      summary=summary, columns=columns, warnings=tuple(warnings))


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
    from sdeval.pipeline import sharding as dist_mod
    from sdeval.evaluate import reference_stats as stats_store
    from sdeval.inputs.discovery import discover
    from sdeval.metrics import registry
    from sdeval.metrics.set_base import FeatureSet, SetMetric
    from sdeval.pipeline.run import iter_rows

    stats_store.check_name(name)
    options = options or RunOptions()
    mo = dict(options.metric_options)
    device = dist_mod.rank_device(mo.get("device"), distributed)
    if device:
        mo["device"] = device
    names = list(dict.fromkeys(registry.resolve(n) for n in parse_metric_names(metrics)))
    set_metrics = []
    for n in names:
        cls = registry.get_class(n)
        if not issubclass(cls, SetMetric) or not cls.needs_reference:
            raise UsageError(f"'{n}' does not compare against reference statistics (use fid, kid, cmmd, clip_fid)")
        set_metrics.append(registry.create(n, mo))
    if not overwrite and (stats_store.stats_dir() / f"{name}.json").exists():
        raise UsageError(f"reference statistics '{name}' already exist; use --overwrite to replace them")
    plan = feature_plan(set_metrics, mo)
    found = discover([paths] if isinstance(paths, (str, Path)) else [str(p) for p in paths])
    ctx = dist_mod.init(distributed)
    try:
        sets = plan.sets()
        run = RunStats()
        for _ in iter_rows(ctx.shard(found.items), [], options, progress if ctx.is_main else None, run,
                           extra_extractors=list(plan.extractors.values()), feature_sink=_sink(sets)):
            pass
        gathered = ctx.gather({"sets": {k: v.state() for k, v in sets.items()}, "run": _run_stats_state(run)})
        stored = None
        if ctx.is_main:
            assert gathered is not None
            if ctx.world_size > 1:
                sets = {k: FeatureSet.from_state(gathered[0]["sets"][k]) for k in sets}
                for part in gathered[1:]:
                    for k in sets:
                        sets[k].merge(FeatureSet.from_state(part["sets"][k]))
                run = _merge_run_stats([p["run"] for p in gathered])
            for k, fs in sets.items():
                if fs.n < 2:
                    from sdeval.core.errors import InputError

                    raise InputError(f"only {fs.n} readable image(s) in {paths}: statistics need at least 2")
            features = {fid: stats_store.stored_feature_from_set(fs, plan.extractors[fid].identity())
                        for fid, fs in sets.items()}
            source = {"paths": [str(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)],
                      "images": run.images, "errors": run.errors, "metrics": names,
                      "protocol": {fid: ex.protocol() for fid, ex in plan.extractors.items()}}
            stored = stats_store.save(name, features, source, overwrite=overwrite)
        ok = ctx.broadcast(stored is not None if ctx.is_main else None)
        if not ctx.is_main and ok:
            stored = stats_store.load(name)
        return stored
    except BaseException:
        ctx.close(clean=False)  # no barrier: the other ranks may be waiting in another collective
        raise
    finally:
        ctx.close()
