"""``sdeval eval``: set-level metrics against a reference and per-image distributions."""

from __future__ import annotations

import sys
from typing import Any

import click

from sdeval.cli.common import (REPORT_OPTION_NAMES, RUN_OPTION_NAMES, build_run_options, end_of_run_report,
                               history_options, history_settings, is_main_rank, record_history, report_options,
                               run_options, set_options, with_metric_options)
from sdeval.core.errors import EXIT_FAILED, EXIT_OK

_METRICS_HELP = ("Comma-separated metrics (default fid,kid): set-level fid, kid, cmmd, clip_fid, lpips_diversity; "
                 "per image clip_score, aesthetic, lpips_ref (and any gate metric).")


class _Stages:
    """One progress display per pass (generated, then reference), never two live at once."""

    def __init__(self) -> None:
        self.current: Any = None
        self.label: str | None = None

    def stage(self, label: str) -> Any:
        from sdeval.cli.output import Progress

        bar = Progress(label)  # made now so its rate counts from the start of the run

        def progress(done: int, total: int) -> None:
            if self.label != label:
                self.close()
                self.current = bar.__enter__()
                self.label = label
            self.current(done, total)
        return progress

    def close(self) -> None:
        if self.current is not None:
            self.current.__exit__(None, None, None)
            self.current = None



@click.command("eval")
@click.argument("generated", nargs=-1, required=True)
@click.option("--ref", metavar="DIR", help="Reference images (a folder, read with the same protocol).")
@click.option("--ref-stats", metavar="NAME", help="Stored reference statistics ('sdeval stats list'), or "
                                                  "cleanfid:DATASET/RES/SPLIT for clean-fid's published ones.")
@click.option("--metrics", "metric_list", metavar="LIST", help=_METRICS_HELP)
@click.option("--fail-if", "fail_if", multiple=True, metavar="'METRIC OP X'",
              help="Exit 1 when it holds, e.g. 'fid > 50' (repeatable; per-image metrics compare their mean).")
@set_options
@click.option("--lpips-net", type=click.Choice(["alex", "vgg"]), help="LPIPS backbone (default alex).")
@click.option("--lpips-size", type=click.IntRange(32), help="LPIPS comparison size in pixels (default 256).")
@click.option("--lpips-pairs", type=click.Path(dir_okay=False), metavar="FILE",
              help="CSV/JSONL with columns path,reference pairing images for lpips_ref.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Result folder. Default: reports/eval-<timestamp>/")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout and nothing else there.")
@history_options
@report_options
@run_options
def eval_command(generated: tuple[str, ...], ref: str | None, ref_stats: str | None, metric_list: str | None,
                 fail_if: tuple[str, ...], out_dir: str | None, as_json: bool, **kw: Any) -> None:
    """Set-level metrics (FID, KID, CMMD, CLIP-FID, LPIPS diversity) and per-image distributions.

    GENERATED are folders (recursive), globs, image files or CSV/JSONL manifests. Exits 1 when a
    --fail-if condition holds, 2 on usage/config errors (protocol mismatch, weights missing offline).
    Under `torchrun --nproc-per-node N -m sdeval eval ...` the inputs are sharded over the processes.
    With --history the run is recorded and checked against its series (--alert-on-regression: exit 1
    when an alert fires).
    """
    from pathlib import Path

    from sdeval import api
    from sdeval.evaluate.set_eval import eval_set

    main_rank = is_main_rank()
    history = history_settings(kw, resolve=main_rank)  # the other ranks neither record nor check
    opts = build_run_options(**{k: kw.pop(k) for k in RUN_OPTION_NAMES})
    report_kw = {k: kw.pop(k) for k in REPORT_OPTION_NAMES}
    opts = with_metric_options(opts, kw)
    out = Path(out_dir) if out_dir else api.default_out_dir("eval")
    stages = _Stages()
    try:
        result = eval_set(list(generated), ref=ref, ref_stats=ref_stats, metrics=metric_list,
                          fail_if=list(fail_if), options=opts, out_dir=out,
                          progress=stages.stage("generated") if main_rank else None,
                          reference_progress=stages.stage("reference") if main_rank else None)
    finally:
        stages.close()
    if main_rank:
        from sdeval.cli.output import print_eval_summary

        if as_json:
            from sdeval.core.io import to_json

            click.echo(to_json(result.summary))
        print_eval_summary(result, err=as_json)
        code = end_of_run_report(result.out_dir, report_kw, passed=result.passed, to_stderr=as_json)
        status = code if code is not None else EXIT_OK if result.passed else EXIT_FAILED
        sys.exit(record_history(result.out_dir, history, status))
    sys.exit(EXIT_OK if result.passed else EXIT_FAILED)
