"""``sdeval cache``: the content-addressed feature cache."""

from __future__ import annotations

import click


@click.group()
def cache() -> None:
    """The content-addressed feature cache (features.sqlite in the cache dir)."""


@cache.command("info")
def cache_info() -> None:
    """Where the feature cache is, its size and entries per feature."""
    from sdeval.features.cache import open_feature_cache

    with open_feature_cache() as c:
        info = c.info()
    click.echo(f"path:    {info.path}")
    click.echo(f"entries: {info.entries}")
    click.echo(f"size:    {info.size_bytes / 1e6:.1f} MB")
    for key, n in sorted(info.by_feature.items()):
        click.echo(f"  {n:>8}  {key}")


@cache.command("clear")
@click.option("--yes", is_flag=True, help="Do not ask.")
def cache_clear(yes: bool) -> None:
    """Delete every cached feature (model weights are kept)."""
    from sdeval.features.cache import open_feature_cache

    if not yes:
        click.confirm("delete every cached feature?", abort=True, err=True)
    with open_feature_cache() as c:
        n = c.clear()
    click.echo(f"removed {n} cached features")
