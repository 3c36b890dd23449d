"""Command line: parse, call the library, show the result, map errors to exit codes.

Exit codes (DESIGN.md): 0 pass · 1 gate failed / regression · 2 usage, config or input error ·
3 internal error. The mapping lives here, once: an :class:`~sdeval.core.errors.SdevalError`
carries its own exit code, anything else is internal. One module per command; they never import
each other (shared flags live in :mod:`sdeval.cli.common`). Heavy libraries are imported inside
commands so ``--help`` stays fast.
"""

from __future__ import annotations

from typing import Any

import click

from sdeval import __version__
from sdeval.cli import cache, compare, eval, gate, history, info, models, report, stats
from sdeval.cli.common import err as _err
from sdeval.core.errors import EXIT_INTERNAL, SdevalError


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdeval")
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
def main(debug: bool) -> None:
    """Evaluate images made by text-to-image models and act on the result.

    \b
    Exit codes: 0 pass, 1 the gate failed / a regression was found, 2 usage/config/input error,
    3 internal error.
    """


for _command in (gate.gate, eval.eval_command, compare.compare_command, stats.stats, info.list_checks,
                 info.list_metrics, models.models, cache.cache, history.history, report.report):
    main.add_command(_command)


def run() -> None:  # pragma: no cover - console entry used by python -m sdeval
    main(prog_name="sdeval")


if __name__ == "__main__":  # pragma: no cover
    run()
