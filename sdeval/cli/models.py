"""``sdeval models``: list, fetch, verify and locate model weights."""

from __future__ import annotations

import sys
from typing import Any

import click

from sdeval.core.errors import EXIT_FAILED, EXIT_OK


@click.group()
def models() -> None:
    """Model weights: list, fetch, verify, locate (cache: $SDEVAL_CACHE_DIR or the user cache dir)."""


@models.command("list")
def models_list() -> None:
    """Every model sdeval uses: state (cached/missing/bundled/override/corrupt), where, size, licence."""
    from sdeval.models import list_models

    for st in list_models():
        size = f"{st.size_on_disk / 1e6:.1f} MB" if st.size_on_disk else "-"
        click.echo(f"{st.spec.id:<28} {st.state:<9} {size:>10}  {st.spec.licence:<14} {st.path or ''}")
        if st.detail:
            click.echo(f"{'':<28} {st.detail}")


@models.command("fetch")
@click.argument("ids", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Download again even when cached.")
def models_fetch(ids: tuple[str, ...], force: bool) -> None:
    """Download models into the cache (atomic, checksum-verified)."""
    from sdeval.cli.output import FetchProgressBar
    from sdeval.models import fetch_models

    with FetchProgressBar() as bar:
        for st in fetch_models(list(ids), progress=bar, force=force):
            click.echo(f"{st.spec.id}: {st.state} {st.path or ''}")


@models.command("verify")
@click.argument("ids", nargs=-1)
def models_verify(ids: tuple[str, ...]) -> None:
    """Re-hash cached models against their known checksums. Exits 1 if any is missing or corrupt."""
    from sdeval.models import verify

    results = verify(list(ids) or None)
    for r in results:
        click.echo(f"{r.id:<28} {r.state:<11} {r.path or ''} {r.detail}")
    sys.exit(EXIT_OK if all(r.ok for r in results if ids or r.state != "missing") else EXIT_FAILED)


@models.command("path")
@click.argument("model_id")
def models_path(model_id: str) -> None:
    """Print where a model's weights are (never downloads; exit 2 if missing)."""
    from sdeval.models import path

    click.echo(str(path(model_id)))
