"""``sdeval stats``: build, list and remove stored reference statistics."""

from __future__ import annotations

from typing import Any

import click

from sdeval.cli.common import (RUN_OPTION_NAMES, build_run_options, is_main_rank, run_options, set_options,
                               with_metric_options)


@click.group("stats")
def stats() -> None:
    """Reference statistics for FID/KID/CMMD (stored in the cache dir, reused by --ref-stats)."""

@stats.command("build")
@click.argument("paths", nargs=-1, required=True)
@click.option("--name", required=True, metavar="NAME", help="Name to store them under.")
@click.option("--metrics", "metric_list", metavar="LIST", default="fid,kid", show_default=True,
              help="Metrics the statistics must serve (fid, kid, cmmd, clip_fid).")
@click.option("--overwrite", is_flag=True, help="Replace statistics of the same name.")
@set_options
@run_options
def stats_build(paths: tuple[str, ...], name: str, metric_list: str, overwrite: bool, **kw: Any) -> None:
    """Reduce a reference folder to mean/covariance (+ features for KID/CMMD) with their protocol."""
    from sdeval.cli.output import Progress
    from sdeval.evaluate.set_eval import build_stats

    opts = build_run_options(**{k: kw.pop(k) for k in RUN_OPTION_NAMES})
    opts = with_metric_options(opts, kw)
    with Progress("reference") as progress:
        stored = build_stats(list(paths), name, metrics=metric_list, options=opts, overwrite=overwrite,
                             progress=progress if is_main_rank() else None)
    if is_main_rank():
        for fid, f in stored.features.items():
            click.echo(f"{stored.name}: {fid} n={f.n} ({', '.join(f.keeps)}) "
                       f"mode={f.identity.get('mode', '-')} model={f.identity.get('model')}")
        click.echo(f"stored in {stored.path}")

@stats.command("list")
def stats_list() -> None:
    """Stored reference statistics: name, images, features, size, source."""
    from sdeval.evaluate.reference_stats import list_stats, stats_dir

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
    from sdeval.core.errors import UsageError
    from sdeval.evaluate.reference_stats import remove

    if not remove(name):
        raise UsageError(f"no reference statistics named '{name}'")
    click.echo(f"removed {name}")
