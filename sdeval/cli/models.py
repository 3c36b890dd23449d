"""``sdeval models``: list, fetch, verify and locate model weights."""

from __future__ import annotations

import sys
from typing import Any

import click

from sdeval.core.errors import EXIT_FAILED, EXIT_OK

_model_path_option = click.option(
    "--model-path", "model_paths", multiple=True, metavar="ID=PATH",
    help="Report on a local file for a model id, as a run with the same flag would use it (repeatable).")


def _options(model_paths: tuple[str, ...]) -> dict[str, Any]:
    from sdeval.models.registry import OPTION_MODEL_PATHS, parse_model_paths

    paths = parse_model_paths(model_paths)
    return {OPTION_MODEL_PATHS: paths} if paths else {}


@click.group()
def models() -> None:
    """Model weights: list, fetch, verify, locate (cache: $SDEVAL_CACHE_DIR or the user cache dir)."""


@models.command("list")
@_model_path_option
def models_list(model_paths: tuple[str, ...]) -> None:
    """Every model sdeval uses: state (cached/missing/bundled/override/corrupt), where, size, licence."""
    from sdeval.models import list_models

    for st in list_models(_options(model_paths)):
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
@_model_path_option
def models_verify(ids: tuple[str, ...], model_paths: tuple[str, ...]) -> None:
    """Re-hash cached models (and --model-path files) against their known checksums.

    Exits 1 if any is missing or corrupt.
    """
    from sdeval.models import verify

    results = verify(list(ids) or None, _options(model_paths))
    for r in results:
        click.echo(f"{r.id:<28} {r.state:<11} {r.path or ''} {r.detail}")
    sys.exit(EXIT_OK if all(r.ok for r in results if ids or r.state != "missing") else EXIT_FAILED)


@models.command("path")
@click.argument("model_id")
def models_path(model_id: str) -> None:
    """Print where a model's weights are (never downloads; exit 2 if missing)."""
    from sdeval.models import path

    click.echo(str(path(model_id)))
