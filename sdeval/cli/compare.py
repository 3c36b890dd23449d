"""``sdeval compare``: arms against a baseline, paired tests per metric, a verdict and an exit code."""

from __future__ import annotations

import sys
from typing import Any

import click

from sdeval.cli.common import (REPORT_OPTION_NAMES, RUN_OPTION_NAMES, apply_votes, build_report_options,
                               build_run_options, end_of_run_report, history_options, history_settings, is_main_rank,
                               record_history, report_options, run_options, set_options, with_metric_options,
                               write_report)
from sdeval.core.errors import EXIT_FAILED, EXIT_OK, UsageError

_METRICS_HELP = ("Comma-separated metrics (default clip_score,aesthetic): per image any registry metric "
                 "(plug-ins included); set-level fid, kid, cmmd, clip_fid (need --ref or --ref-stats).")


def _margins(values: tuple[str, ...], config: dict[str, float]) -> dict[str, float]:
    out = dict(config)
    for text in values:
        name, sep, x = text.partition("=")
        try:
            margin = float(x)
        except ValueError:
            margin = float("nan")
        if not sep or not name.strip() or not margin >= 0:
            raise UsageError(f"--margin {text!r}: expected METRIC=X with X >= 0 (in the metric's unit)")
        out[name.strip()] = margin
    return out


@click.command("compare")
@click.argument("inputs", nargs=-1)
@click.option("--arm", "arms", multiple=True, metavar="NAME=PATH", help="An arm with an explicit name (repeatable).")
@click.option("--arms-by", metavar="FIELD",
              help="Split the one input into arms by a field: model, sampler, cfg, steps, group, ...")
@click.option("--baseline", metavar="NAME", help="The arm the others are compared with (default: the first).")
@click.option("--metrics", "metric_list", metavar="LIST", help=_METRICS_HELP)
@click.option("--ref", metavar="DIR", help="Reference images for set metrics.")
@click.option("--ref-stats", metavar="NAME", help="Stored reference statistics for set metrics ('sdeval stats list').")
@click.option("--policy", metavar="FILE|PRESET", help="A gate policy: each arm's pass rate is compared too.")
@click.option("--pair-by", type=click.Choice(["key", "filename", "none"]),
              help="Pair images by prompt + seed (key, falling back to the file name; default) or file name.")
@click.option("--margin", "margins", multiple=True, metavar="METRIC=X",
              help="Non-inferiority margin in the metric's unit (repeatable).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), help="Significance (0.05).")
@click.option("--fail-on-regression", is_flag=True, default=None, help="Exit 1 when any metric regressed.")
@click.option("--resamples", type=click.IntRange(100), help="Bootstrap resamples (default 10000).")
@click.option("--permutations", type=click.IntRange(100), help="Label swaps for set metrics (default 1000).")
@click.option("--seed", type=int, help="Seed of the resampling (default 0).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="TOML with a [compare] table. Default: ./sdeval.toml [compare], else pyproject.toml "
                   "[tool.sdeval.compare].")
@set_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Result folder. Default: reports/compare-<timestamp>/")
@click.option("--json", "as_json", is_flag=True, help="Print compare.json to stdout and nothing else there.")
@click.option("--human-form", is_flag=True,
              help="Also write human/index.html: a blind pairwise preference form over the pairs (offline).")
@click.option("--votes", multiple=True, type=click.Path(dir_okay=False), metavar="CSV",
              help="With one INPUT that is a compare result folder: add raters' votes from the form "
                   "(repeatable) to its compare.json and report, and exit.")
@history_options
@report_options
@run_options
def compare_command(inputs: tuple[str, ...], arms: tuple[str, ...], arms_by: str | None, baseline: str | None,
                    metric_list: str | None, ref: str | None, ref_stats: str | None, policy: str | None,
                    pair_by: str | None, margins: tuple[str, ...], alpha: float | None,
                    fail_on_regression: bool | None, resamples: int | None, permutations: int | None,
                    seed: int | None, config_path: str | None, out_dir: str | None, as_json: bool,
                    human_form: bool, votes: tuple[str, ...], **kw: Any) -> None:
    """Compare arms (BASELINE CANDIDATE [MORE...]) metric by metric with paired significance tests.

    Each input (folder, glob, manifest) is an arm named after it. Images are paired by prompt + seed;
    every (arm, metric) gets a difference with its interval, a raw and a Holm-adjusted p and a
    decision (improved, regressed, no_change, non_inferior, inconclusive). Exits 1 with
    --fail-on-regression when any metric regressed, 2 on usage/config/input errors (nothing could be
    paired included), 3 on internal errors.
    """
    from pathlib import Path

    from sdeval import api
    from sdeval.cli.output import Progress, print_compare_summary
    from sdeval.compare.config import load_config
    from sdeval.compare.run import CompareSettings

    if votes:
        _add_votes(inputs, votes, kw, human_form)
        return
    cfg = load_config(config_path)

    def pick(value: Any, key: str, default: Any = None) -> Any:
        return value if value is not None else cfg.get(key, default)

    main_rank = is_main_rank()
    history = history_settings(kw, resolve=main_rank)  # the other ranks neither record nor check
    opts = build_run_options(**{k: kw.pop(k) for k in RUN_OPTION_NAMES})
    report_kw = {k: kw.pop(k) for k in REPORT_OPTION_NAMES}
    opts = with_metric_options(opts, kw)
    settings = CompareSettings(pair_by=pick(pair_by, "pair_by", "key"), alpha=float(pick(alpha, "alpha", 0.05)),
                               resamples=int(pick(resamples, "resamples", 10000)),
                               permutations=int(pick(permutations, "permutations", 1000)),
                               seed=int(pick(seed, "seed", 0)), margins=_margins(margins, cfg.get("margin", {})),
                               fail_on_regression=bool(pick(fail_on_regression, "fail_on_regression", False)))
    out = pick(out_dir, "out")
    with Progress("evaluating") as progress, Progress("reference") as ref_progress:
        result = api.compare(list(inputs), pick(metric_list, "metrics"), arms=list(arms),
                             arms_by=pick(arms_by, "arms_by"), baseline=pick(baseline, "baseline"),
                             ref=pick(ref, "ref"), ref_stats=pick(ref_stats, "ref_stats"),
                             policy=pick(policy, "policy"), settings=settings, options=opts,
                             out_dir=Path(out) if out else api.default_out_dir("compare"),
                             progress=progress if main_rank else None,
                             reference_progress=ref_progress if main_rank else None)
    if main_rank:
        if as_json:
            from sdeval.core.io import to_json

            click.echo(to_json(result.report))
        print_compare_summary(result, err=as_json)
    status = EXIT_FAILED if result.regression and settings.fail_on_regression else EXIT_OK
    if not main_rank:
        sys.exit(status)
    code = end_of_run_report(result.out_dir, report_kw, passed=status == EXIT_OK, to_stderr=as_json,
                             human_form=human_form)
    sys.exit(record_history(result.out_dir, history, code if code is not None else status))


def _add_votes(inputs: tuple[str, ...], votes: tuple[str, ...], kw: dict[str, Any], human_form: bool) -> None:
    """``compare --votes CSV RESULT_DIR``: the human result into an existing comparison, re-rendered."""
    from pathlib import Path

    if len(inputs) != 1 or not (Path(inputs[0]) / "compare.json").is_file():
        raise UsageError("--votes needs exactly one INPUT: the result folder of an earlier compare "
                         "(the folder holding compare.json)")
    apply_votes(inputs[0], votes)
    if not kw.get("no_report"):
        write_report(inputs[0], build_report_options(kw.get("report_format"), kw.get("report_url"),
                                                     kw.get("report_assets"), kw.get("report_max_images"),
                                                     human_form=human_form))
