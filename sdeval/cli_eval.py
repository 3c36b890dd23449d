"""``sdeval eval`` and ``sdeval stats``: thin faces over :mod:`sdeval.evaluation` and the stats store.

Registered on the main group by :func:`add_eval_commands` (called at the end of ``cli.py``), so the
command bodies live here and ``cli.py`` keeps only the hook. Heavy imports stay inside commands.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from sdeval.errors import EXIT_FAILED, EXIT_OK

_METRICS_HELP = ("Comma-separated metrics (default fid,kid): set-level fid, kid, cmmd, clip_fid, lpips_diversity; "
                 "per image clip_score, aesthetic, lpips_ref (and any gate metric).")


def _set_options(fn: Any) -> Any:
    """Options of the set-level metrics, shared by ``eval`` and ``stats build``."""
    decorators = [
        click.option("--mode", "fid_mode", type=click.Choice(["clean", "legacy_tensorflow"]), default="clean",
                     show_default=True, help="Inception preprocessing: clean-fid's 'clean' resize, or "
                                             "'legacy_tensorflow' to compare with published FIDs."),
        click.option("--exact-inception", "inception_optimize", flag_value=False, default=None,
                     help="Run the Inception file exactly as clean-fid does (default on CPU: frozen and "
                          "optimised, ~1.3x faster, features within ~1e-5)."),
        click.option("--kid-subsets", type=click.IntRange(1), help="KID subsets (default 100)."),
        click.option("--kid-subset-size", type=click.IntRange(2), help="KID subset size (default 1000; capped at N)."),
        click.option("--cmmd-clip-model", metavar="NAME",
                     help="open_clip model for CMMD/CLIP-FID (default ViT-L-14-336)."),
        click.option("--cmmd-clip-pretrained", metavar="TAG|PATH",
                     help="Its weights: tag, file or local-dir:DIR (default openai)."),
    ]
    for d in reversed(decorators):
        fn = d(fn)
    return fn


def _metric_options(opts: Any, values: dict[str, Any]) -> Any:
    from dataclasses import replace

    mo = dict(opts.metric_options)
    for key, value in values.items():
        if value not in (None, ()):
            mo[key] = value
    return replace(opts, metric_options=mo)


class _Stages:
    """One progress display per pass (generated, then reference), never two live at once."""

    def __init__(self) -> None:
        self.current: Any = None
        self.label: str | None = None

    def stage(self, label: str) -> Any:
        from sdeval.cli_output import Progress

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


def _is_main_rank() -> bool:
    import os

    return os.environ.get("RANK", "0") in ("", "0")


def add_eval_commands(main: click.Group) -> None:
    from sdeval.cli import RUN_OPTION_NAMES, build_run_options, run_options

    @main.command("eval")
    @click.argument("generated", nargs=-1, required=True)
    @click.option("--ref", metavar="DIR", help="Reference images (a folder, read with the same protocol).")
    @click.option("--ref-stats", metavar="NAME", help="Stored reference statistics ('sdeval stats list'), or "
                                                      "cleanfid:DATASET/RES/SPLIT for clean-fid's published ones.")
    @click.option("--metrics", "metric_list", metavar="LIST", help=_METRICS_HELP)
    @click.option("--fail-if", "fail_if", multiple=True, metavar="'METRIC OP X'",
                  help="Exit 1 when it holds, e.g. 'fid > 50' (repeatable; per-image metrics compare their mean).")
    @_set_options
    @click.option("--lpips-net", type=click.Choice(["alex", "vgg"]), help="LPIPS backbone (default alex).")
    @click.option("--lpips-size", type=click.IntRange(32), help="LPIPS comparison size in pixels (default 256).")
    @click.option("--lpips-pairs", type=click.Path(dir_okay=False), metavar="FILE",
                  help="CSV/JSONL with columns path,reference pairing images for lpips_ref.")
    @click.option("--out", "out_dir", type=click.Path(file_okay=False), metavar="DIR",
                  help="Result folder. Default: reports/eval-<timestamp>/")
    @click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout and nothing else there.")
    @run_options
    def eval_command(generated: tuple[str, ...], ref: str | None, ref_stats: str | None, metric_list: str | None,
                     fail_if: tuple[str, ...], out_dir: str | None, as_json: bool, **kw: Any) -> None:
        """Set-level metrics (FID, KID, CMMD, CLIP-FID, LPIPS diversity) and per-image distributions.

        GENERATED are folders (recursive), globs, image files or CSV/JSONL manifests. Exits 1 when a
        --fail-if condition holds, 2 on usage/config errors (protocol mismatch, weights missing offline).
        Under `torchrun --nproc-per-node N -m sdeval eval ...` the inputs are sharded over the processes.
        """
        from pathlib import Path

        from sdeval import api
        from sdeval.evaluation import eval_set

        opts = build_run_options(**{k: kw.pop(k) for k in RUN_OPTION_NAMES})
        opts = _metric_options(opts, kw)
        main_rank = _is_main_rank()
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
            if as_json:
                from sdeval.reports.writers import to_json

                click.echo(to_json(result.summary))
            print_eval_summary(result, err=as_json)
        sys.exit(EXIT_OK if result.passed else EXIT_FAILED)

    @main.group("stats")
    def stats() -> None:
        """Reference statistics for FID/KID/CMMD (stored in the cache dir, reused by --ref-stats)."""

    @stats.command("build")
    @click.argument("paths", nargs=-1, required=True)
    @click.option("--name", required=True, metavar="NAME", help="Name to store them under.")
    @click.option("--metrics", "metric_list", metavar="LIST", default="fid,kid", show_default=True,
                  help="Metrics the statistics must serve (fid, kid, cmmd, clip_fid).")
    @click.option("--overwrite", is_flag=True, help="Replace statistics of the same name.")
    @_set_options
    @run_options
    def stats_build(paths: tuple[str, ...], name: str, metric_list: str, overwrite: bool, **kw: Any) -> None:
        """Reduce a reference folder to mean/covariance (+ features for KID/CMMD) with their protocol."""
        from sdeval.cli_output import Progress
        from sdeval.evaluation import build_stats

        opts = build_run_options(**{k: kw.pop(k) for k in RUN_OPTION_NAMES})
        opts = _metric_options(opts, kw)
        with Progress("reference") as progress:
            stored = build_stats(list(paths), name, metrics=metric_list, options=opts, overwrite=overwrite,
                                 progress=progress if _is_main_rank() else None)
        if _is_main_rank():
            for fid, f in stored.features.items():
                click.echo(f"{stored.name}: {fid} n={f.n} ({', '.join(f.keeps)}) "
                           f"mode={f.identity.get('mode', '-')} model={f.identity.get('model')}")
            click.echo(f"stored in {stored.path}")

    @stats.command("list")
    def stats_list() -> None:
        """Stored reference statistics: name, images, features, size, source."""
        from sdeval.stats_store import list_stats, stats_dir

        infos = list_stats()
        if not infos:
            click.echo(f"no reference statistics in {stats_dir()}")
        for i in infos:
            click.echo(f"{i.name:<24} {i.images:>8} images  {', '.join(i.features):<40} "
                       f"{i.size_bytes / 1e6:>8.1f} MB  {i.created}  {i.source}")

    @stats.command("remove")
    @click.argument("name")
    def stats_remove(name: str) -> None:
        """Delete stored reference statistics."""
        from sdeval.errors import UsageError
        from sdeval.stats_store import remove

        if not remove(name):
            raise UsageError(f"no reference statistics named '{name}'")
        click.echo(f"removed {name}")


def print_eval_summary(result: Any, err: bool) -> None:
    """Set-level values, per-image distributions, warnings and the --fail-if outcome (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=err, highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)
    s = result.summary
    if s["set_metrics"]:
        t = Table(title="set-level metrics", title_justify="left")
        for col in ("metric", "value", "details"):
            t.add_column(col)
        for name, entry in s["set_metrics"].items():
            value = entry.get("value")
            details = []
            for key in ("std", "n_generated", "n_reference", "subset_size", "groups", "pairs"):
                if entry.get(key) is not None:
                    v = entry[key]
                    details.append(f"{key}={v:.4g}" if isinstance(v, float) else f"{key}={v}")
            t.add_row(name, "-" if value is None else f"{value:.6g}", " ".join(details))
        console.print(t)
    if s["metrics"]:
        t = Table(title="per-image metrics", title_justify="left")
        for col in ("metric", "n", "mean", "min", "median", "max"):
            t.add_column(col)
        for name, d in s["metrics"].items():
            fmt = (lambda k: "-" if d.get(k) is None else f"{d[k]:.4g}")  # noqa: E731
            t.add_row(name, str(d["n"]), fmt("mean"), fmt("min"), fmt("median"), fmt("max"))
        console.print(t)
    for w in s["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    t = s["timing"]
    console.print(f"{s['images']} generated images in {t['seconds']:.2f} s")
    if s["fail_if"]:
        status = "[red]FAILED[/]" if s["failures"] else "[green]PASSED[/]"
        why = f": {'; '.join(s['failures'])}" if s["failures"] else ""
        console.print(f"eval {status}{why}")
    if s.get("out_dir"):
        console.print(f"results: {s['out_dir']}/results.jsonl, results.csv, summary.json")
