"""The library API the CLI is a face for: ``evaluate`` returns a table, ``gate`` returns verdicts,
``compare`` returns tests and decisions per (arm, metric)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from sdeval.core.errors import EXIT_INTERNAL, SdevalError
from sdeval.gates.engine import BatchVerdict, judge_batch, judge_image
from sdeval.gates.policy import Policy
from sdeval.gates.result import GateResult, write_result_folder
from sdeval.inputs.discovery import Discovery, discover
from sdeval.pipeline.rows import SCHEMA_VERSION
from sdeval.pipeline.run import (ProgressFn, RunOptions, RunStats, build_metrics, extractors_of, iter_rows,
                                 protocol_of)
from sdeval.results.files import check_result_folder
from sdeval.results.schema import gate_columns
from sdeval.results.summary import verdict_summary

if TYPE_CHECKING:  # pandas is imported lazily: `sdeval --help` stays fast
    import pandas as pd

    from sdeval.compare.result import CompareResult
    from sdeval.compare.run import CompareSettings
    from sdeval.history.config import HistorySettings
    from sdeval.history.service import Recorded
    from sdeval.history.store import Store
    from sdeval.reports import RenderedReport, ReportOptions

def load_policy(policy: Policy | str | None = None, overrides: dict[str, Any] | None = None) -> Policy:
    """A Policy from a preset name, a TOML file, or the project's config; ``overrides`` win."""
    from sdeval.gates.sources import policy_source
    from sdeval.gates.policy import build_policy

    if isinstance(policy, Policy):
        return policy if not overrides else build_policy_from(policy, overrides)
    return build_policy(policy_source(policy), overrides)


def build_policy_from(policy: Policy, overrides: dict[str, Any]) -> Policy:
    from sdeval.core.config import TomlSource
    from sdeval.gates.policy import build_policy

    extra = build_policy(TomlSource({}, name="overrides"), overrides)
    return replace(policy, rules=policy.rules + extra.rules,
                   options={**policy.options, **extra.options})


def evaluate(paths: Sequence[str] | str, metrics: Sequence[str], *, options: RunOptions | None = None,
             progress: ProgressFn | None = None) -> "pd.DataFrame":
    """Per-image metric values (no verdicts) as a DataFrame, one row per input image."""
    import pandas as pd

    options = options or RunOptions()
    found = discover([paths] if isinstance(paths, str) else list(paths))
    ms = build_metrics(metrics, options.metric_options)
    rows = list(iter_rows(found.items, ms, options, progress))
    columns = gate_columns([m.name for m in ms])
    return pd.DataFrame(rows, columns=[c for c in columns if c not in ("verdict", "reasons", "notes")])


def gate(paths: Sequence[str] | str, policy: Policy | str | None = None, *, options: RunOptions | None = None,
         out_dir: str | Path | None = None, progress: ProgressFn | None = None,
         command: str = "gate", distributed: bool | str = "auto") -> GateResult:
    """Evaluate ``paths`` under ``policy``; write the result folder when ``out_dir`` is given.

    Under torchrun each rank evaluates a contiguous shard of the inputs; rank 0 gathers the rows
    (in input order, duplicates marked across shards), judges them and writes ``out_dir``; every
    rank gets the batch verdict and the summary (the rows only on rank 0).
    """
    from sdeval.pipeline import sharding
    from sdeval.pipeline.sharding import Shard, gather_shards

    started_at = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    if out_dir is not None:
        check_result_folder(Path(out_dir))
    policy = policy if isinstance(policy, Policy) else load_policy(policy)
    options = options or RunOptions()
    mo = {**policy.options, **options.metric_options}
    device = sharding.rank_device(mo.get("device"), distributed)
    if device:
        mo["device"] = device
    options = replace(options, metric_options=mo)
    found = discover([paths] if isinstance(paths, str) else list(paths))
    metrics = build_metrics(policy.metrics, options.metric_options)
    extractors = extractors_of(metrics)
    ctx = sharding.init(distributed)
    try:
        stats = RunStats()
        shard = list(iter_rows(ctx.shard(found.items), metrics, options, progress if ctx.is_main else None, stats))
        merged = gather_shards(ctx, {"gate": Shard(shard, {}, stats)})
        result = None
        if merged is not None:
            try:
                result = _judged(merged["gate"], policy, metrics, extractors, options, found, command, started_at,
                                 t0, ctx.world_size, out_dir)
            except Exception as exc:
                if ctx.world_size > 1:  # the other ranks wait for rank 0's result: give them the error
                    code = exc.exit_code if isinstance(exc, SdevalError) else EXIT_INTERNAL
                    ctx.broadcast({"failure": {"message": f"{type(exc).__name__}: {exc}", "exit_code": code}})
                raise
        shared = ctx.broadcast(None if result is None or ctx.world_size == 1 else
                               {"batch": result.batch, "summary": result.summary, "columns": result.columns})
        if shared is not None and "failure" in shared:
            from sdeval.evaluate.set_eval import remote_error

            raise remote_error(shared["failure"])
        if result is None:
            result = GateResult(rows=[], batch=shared["batch"], policy=policy, summary=shared["summary"],
                                columns=shared["columns"])
        return result
    except BaseException:
        ctx.close(clean=False)  # no barrier: the other ranks may be waiting in another collective
        raise
    finally:
        ctx.close()


def _judged(shard: Any, policy: Policy, metrics: Sequence[Any], extractors: Sequence[Any], options: RunOptions,
            found: Discovery, command: str, started_at: datetime, t0: float, world_size: int,
            out_dir: str | Path | None) -> GateResult:
    """Rank 0: verdicts for the gathered rows, the batch verdict, the summary, the result folder."""
    rows, stats = shard.rows, shard.stats
    for row in rows:
        v = judge_image(row, policy)
        row.update(verdict=v.verdict, reasons=list(v.reasons), notes=list(v.notes))
    batch = judge_batch((r["verdict"] for r in rows), policy)
    columns = gate_columns([m.name for m in metrics])
    protocol = protocol_of(metrics, extractors, options)
    if world_size > 1:
        protocol["distributed"] = {"world_size": world_size}
    summary = _summary(command, rows, batch, policy, found, stats, protocol, started_at, time.perf_counter() - t0,
                       [m.name for m in metrics])
    result = GateResult(rows=rows, batch=batch, policy=policy, summary=summary, columns=columns)
    if out_dir is not None:
        result = write_result_folder(result, Path(out_dir))
    return result


def report(out_dir: str | Path, options: "ReportOptions | None" = None,
           step_summary: str | Path | None = None) -> "RenderedReport":
    """Render the result folder ``out_dir`` (report.html, junit.xml, summary.md by default): the same
    code at the end of gate / eval / compare and in ``sdeval report DIR``. ``step_summary``: GitHub's
    ``$GITHUB_STEP_SUMMARY`` file, to append the Markdown summary to."""
    from sdeval.reports import ReportOptions, render

    return render(Path(out_dir), options or ReportOptions(),
                  step_summary=Path(step_summary) if step_summary else None)


def add_votes(result_dir: str | Path, vote_files: Sequence[str | Path]) -> dict[str, Any]:
    """Human preference votes (the CSVs of ``human/index.html``) into the comparison's compare.json:
    win rates with Wilson intervals, sign tests, Bradley-Terry for more than two arms."""
    from sdeval.compare.votes import add_votes as _add

    return _add(result_dir, vote_files)


def default_out_dir(command: str) -> Path:
    return Path("reports") / f"{command}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _summary(command: str, rows: list[dict[str, Any]], batch: BatchVerdict, policy: Policy, found: Discovery,
             stats: RunStats, protocol: dict[str, Any], started_at: datetime, seconds: float,
             metric_names: Sequence[str]) -> dict[str, Any]:
    duplicates = [{"path": r["path"], "duplicate_of": r["duplicate_of"]} for r in rows if r["duplicate_of"]]
    return {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "started_at": started_at.isoformat(timespec="seconds"),
        "passed": batch.passed,
        "verdict": batch.as_dict(),
        **verdict_summary(rows, batch.counts, metric_names),
        "inputs": {"skipped_non_images": dict(found.skipped), "manifests": list(found.manifests),
                   "duplicates": duplicates},
        "policy": policy.as_dict(),
        "protocol": protocol,
        "features": {fid: {"cache_hits": hits, "computed": computed}
                     for fid, (hits, computed) in stats.features.items()},
        "cache_problems": list(stats.cache_problems),
        "timing": {"seconds": round(seconds, 3), "pipeline_seconds": round(stats.seconds, 3),
                   "images_per_second": round(len(rows) / seconds, 2) if seconds > 0 else None},
    }


def __getattr__(name: str) -> Any:
    if name == "CompareSettings":
        from sdeval.compare.run import CompareSettings

        return CompareSettings
    raise AttributeError(name)


def compare(inputs: Sequence[str] | str = (), metrics: Sequence[str] | str | None = None, *,
            arms: Sequence[str] = (), arms_by: str | None = None, baseline: str | None = None,
            ref: str | None = None, ref_stats: str | None = None, policy: Policy | str | None = None,
            settings: "CompareSettings | None" = None, options: RunOptions | None = None,
            out_dir: str | Path | None = None, progress: ProgressFn | None = None,
            reference_progress: ProgressFn | None = None, distributed: bool | str = "auto") -> "CompareResult":
    """Compare arms against a baseline with paired tests per metric (see :func:`sdeval.compare.run.compare`).

    ``inputs``: folders, globs or manifests, one arm each (named after them); ``arms``: ``NAME=PATH``;
    ``arms_by``: split one input by a metadata field. Returns a :class:`CompareResult` whose
    ``metrics`` table holds one row per (arm, metric): delta with its interval, raw and Holm p,
    decision; ``regression`` is the verdict.
    """
    from sdeval.compare.run import compare as run_compare

    return run_compare(inputs, metrics, arms=arms, arms_by=arms_by, baseline=baseline, ref=ref, ref_stats=ref_stats,
                       policy=policy, settings=settings, options=options, out_dir=out_dir, progress=progress,
                       reference_progress=reference_progress, distributed=distributed)
# -- history: record a run, read the store (sdeval.history) ------------------------------------------------


def history_settings(**flags: Any) -> "HistorySettings":
    """Settings from the history flags given (None = not given), ``SDEVAL_HISTORY`` and the config file;
    with a store named, it is opened (and migrated) now, so a bad URL or a database from a newer sdeval
    fails before the run rather than after it."""
    from sdeval.history.config import resolve_settings
    from sdeval.history.store import open_store

    settings = resolve_settings(**flags)
    if settings.url is not None:
        open_store(settings.url).close()
    return settings


def record_history(result: str | Path | dict[str, Any], settings: "HistorySettings", *,
                   exit_status: int | None = None, command_line: str | None = None) -> "Recorded | None":
    """Append a finished run (its result folder) to ``settings.url`` and check it for regressions;
    None when no history is configured."""
    if settings.url is None:
        return None
    from sdeval.history.service import record_result

    return record_result(settings.url, result, settings=settings, exit_status=exit_status,
                         command_line=command_line)


def open_history(location: str | None) -> "Store":
    """The store a ``sdeval history`` command reads: ``location``, else ``SDEVAL_HISTORY``, else the config."""
    from sdeval.history.config import history_location
    from sdeval.history.store import open_store

    return open_store(history_location(location))


def history_report(location: str | None, out: str | Path, *, last: int | None = None) -> Path:
    """The dashboard (one self-contained HTML file) of every label in the history."""
    from sdeval.history.trend import dashboard_data
    from sdeval.reports.dashboard import write_dashboard

    with open_history(location) as store:
        data = dashboard_data(store, last=last)
    return write_dashboard(data, Path(out))
