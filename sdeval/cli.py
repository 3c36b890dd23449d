"""Command line: parse, call the library, show the result, map errors to exit codes.

Exit codes (DESIGN.md): 0 pass · 1 gate failed / regression · 2 usage, config or input error ·
3 internal error. Heavy libraries are imported inside commands so ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from sdeval import __version__
from sdeval.errors import EXIT_FAILED, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, SdevalError


class _Group(click.Group):
    """Maps exceptions to exit codes; an unexpected one must never look like "gate failed"."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except SdevalError as exc:
            _err(f"error: {exc}")
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            _err("interrupted")
            ctx.exit(130)
        except Exception as exc:
            if ctx.find_root().params.get("debug"):
                import traceback

                traceback.print_exc()
            else:
                _err(f"internal error: {type(exc).__name__}: {exc}\n  (run with --debug for the traceback; "
                     "please report it)")
            ctx.exit(EXIT_INTERNAL)


def _err(msg: str) -> None:
    click.echo(msg, err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdeval")
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
def main(debug: bool) -> None:
    """Evaluate images made by text-to-image models and act on the result.

    \b
    Exit codes: 0 pass, 1 the gate failed, 2 usage/config/input error, 3 internal error.
    """


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--policy", "policy", metavar="FILE|PRESET",
              help="Policy TOML file or preset (default, strict, offline, ...). Default: ./sdeval.toml "
                   "[gate], else pyproject.toml [tool.sdeval.gate], else the 'default' preset.")
@click.option("--min-clip", type=float, help="Rule: clip_score < X -> reprompt.")
@click.option("--min-aesthetic", type=float, help="Rule: aesthetic < X -> reseed.")
@click.option("--max-nsfw", type=float, help="Rule: nsfw > X -> block.")
@click.option("--check", "checks", multiple=True, metavar="NAME",
              help="Add a named check or family (repeatable; see 'sdeval checks').")
@click.option("--rule", "rules", multiple=True, metavar="'METRIC OP X [-> ACTION]'",
              help="Add a rule, e.g. 'pixel_std < 4 -> reseed' (repeatable).")
@click.option("--resolution", metavar="WxH", help="Requested size, for images whose metadata has none.")
@click.option("--min-pass-rate", type=click.FloatRange(0, 1), help="Fail the batch below this pass rate.")
@click.option("--allow-errors", is_flag=True, default=None,
              help="Unreadable images do not fail the batch (they still get verdict 'error').")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Result folder. Default: reports/gate-<timestamp>/")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout and nothing else there.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--workers", type=click.IntRange(1), help="Decode threads (default: CPU count, at most 8).")
@click.option("--max-pixels", type=click.IntRange(1), help="Decompression-bomb limit in pixels (default 8192x8192).")
def gate(paths: tuple[str, ...], policy: str | None, min_clip: float | None, min_aesthetic: float | None,
         max_nsfw: float | None, checks: tuple[str, ...], rules: tuple[str, ...], resolution: str | None,
         min_pass_rate: float | None, allow_errors: bool | None, out_dir: str | None, as_json: bool,
         batch_size: int, workers: int | None, max_pixels: int | None) -> None:
    """Give each image a verdict (pass / reseed / reprompt / restore_face / block / error).

    PATHS are folders (recursive), globs, image files or CSV/JSONL manifests.
    Exits 1 when the batch fails the policy.
    """
    from pathlib import Path

    from sdeval import api
    from sdeval.cli_output import Progress, print_gate_summary
    from sdeval.inputs.decode import DecodeOptions
    from sdeval.pipeline import RunOptions

    overrides: dict[str, Any] = {}
    for key, value in (("min_clip", min_clip), ("min_aesthetic", min_aesthetic), ("max_nsfw", max_nsfw),
                       ("resolution", resolution), ("min_pass_rate", min_pass_rate),
                       ("allow_errors", allow_errors)):
        if value is not None:
            overrides[key] = value
    if checks:
        overrides["checks"] = list(checks)
    if rules:
        overrides["rules"] = list(rules)
    pol = api.load_policy(policy, overrides)
    decode = DecodeOptions(max_pixels=max_pixels) if max_pixels else DecodeOptions()
    opts = RunOptions(batch_size=batch_size, decode=decode)
    if workers:
        opts = RunOptions(batch_size=batch_size, decode=decode, workers=workers)
    out = Path(out_dir) if out_dir else api.default_out_dir("gate")
    with Progress("evaluating") as progress:
        result = api.gate(list(paths), pol, options=opts, out_dir=out, progress=progress)
    if as_json:
        from sdeval.reports.writers import to_json

        click.echo(to_json(result.summary))
        print_gate_summary(result, err=True)
    else:
        print_gate_summary(result, err=False)
    sys.exit(EXIT_OK if result.passed else EXIT_FAILED)


@main.command("checks")
def list_checks() -> None:
    """List the named checks, their rules and default thresholds."""
    from sdeval.gates.checks import CHECKS, FAMILIES

    for name, check in CHECKS.items():
        click.echo(f"{name}: {check.description}")
        for r in check.rules:
            click.echo(f"    {r.describe()}    ({r.why})")
    for fam, members in FAMILIES.items():
        click.echo(f"family {fam}: {', '.join(members)}")


@main.command("metrics")
def list_metrics() -> None:
    """List the metrics sdeval knows (built-in and plug-ins)."""
    from sdeval.metrics import registry

    for name in registry.names():
        cls = registry.get_class(name)
        direction = "higher is better" if cls.higher_is_better else "lower is better"
        click.echo(f"{name:<16} {cls.kind:<6} {direction:<17} {cls.unit:<22} {cls.description}")


def run() -> None:  # pragma: no cover - console entry used by python -m sdeval
    main(prog_name="sdeval")


if __name__ == "__main__":  # pragma: no cover
    run()
