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


def run_options(fn: Any) -> Any:
    """Options shared by commands that evaluate images (how to run, not what to judge)."""
    decorators = [
        click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True,
                     help="Images per model forward."),
        click.option("--workers", type=click.IntRange(1), help="Decode threads (default: CPU count, at most 8)."),
        click.option("--max-pixels", type=click.IntRange(1),
                     help="Decompression-bomb limit in pixels (default 8192x8192)."),
        click.option("--device", metavar="DEVICE", help="Torch device for models: cuda, cuda:1, mps, cpu "
                                                        "(default: the best available)."),
        click.option("--clip-model", metavar="NAME", help="open_clip architecture (default ViT-L-14)."),
        click.option("--clip-pretrained", metavar="TAG|PATH",
                     help="open_clip pretrained tag, a local .pt/.safetensors file, or local-dir:DIR "
                          "(default openai)."),
        click.option("--model-path", "model_paths", multiple=True, metavar="ID=PATH",
                     help="Use a local file for a model id (repeatable; see 'sdeval models list')."),
        click.option("--offline", is_flag=True, default=None,
                     help="Never touch the network; a missing model is exit 2 (also SDEVAL_OFFLINE=1)."),
        click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache."),
    ]
    for d in reversed(decorators):
        fn = d(fn)
    return fn


RUN_OPTION_NAMES = ("batch_size", "workers", "max_pixels", "device", "clip_model", "clip_pretrained",
                    "model_paths", "offline", "no_cache")


def build_run_options(batch_size: int, workers: int | None, max_pixels: int | None, device: str | None,
                      clip_model: str | None, clip_pretrained: str | None, model_paths: tuple[str, ...],
                      offline: bool | None, no_cache: bool) -> Any:
    """RunOptions from the shared flags (offline mode is set before any model library is imported)."""
    from sdeval.errors import UsageError
    from sdeval.inputs.decode import DecodeOptions
    from sdeval.pipeline import RunOptions

    metric_options: dict[str, Any] = {}
    if offline:
        from sdeval.models import set_offline

        set_offline(True)
        metric_options["offline"] = True
    for key, value in (("device", device), ("clip_model", clip_model), ("clip_pretrained", clip_pretrained)):
        if value:
            metric_options[key] = value
    paths: dict[str, str] = {}
    for item in model_paths:
        mid, sep, p = item.partition("=")
        if not sep or not mid or not p:
            raise UsageError(f"--model-path takes ID=PATH, got {item!r}")
        paths[mid.strip()] = p.strip()
    if paths:
        metric_options["model_paths"] = paths
    kwargs: dict[str, Any] = {"batch_size": batch_size, "metric_options": metric_options, "cache": not no_cache}
    if max_pixels:
        kwargs["decode"] = DecodeOptions(max_pixels=max_pixels)
    if workers:
        kwargs["workers"] = workers
    return RunOptions(**kwargs)


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
@click.option("--regenerate", "regen_backend", type=click.Choice(["comfyui", "a1111"]),
              help="Re-queue failing images (reseed / reprompt / restore_face) until they pass or run out of "
                   "attempts; quarantine blocked ones. Exit 1 if any image ends unresolved.")
@click.option("--comfy-url", metavar="URL", help="ComfyUI server for --regenerate comfyui "
                                                 "(default http://127.0.0.1:8188).")
@click.option("--a1111-url", metavar="URL", help="AUTOMATIC1111 server (--api) for --regenerate a1111 "
                                                 "(default http://127.0.0.1:7860).")
@click.option("--max-attempts", type=click.IntRange(1), help="Regeneration attempts per image (default 3).")
@click.option("--workflow", "workflow", type=click.Path(dir_okay=False), metavar="FILE",
              help="API-format ComfyUI workflow to submit instead of each image's embedded graph; the image's "
                   "prompt and seed are put into it.")
@click.option("--concurrency", type=click.IntRange(1),
              help="Prompts in flight at once (default 2: one running, one queued behind it).")
@click.option("--generation-timeout", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Cancel a submission after this long, queue time included (default 600).")
@click.option("--dry-run", is_flag=True, help="With --regenerate: print the graphs / requests that would be "
                                              "submitted first, submit and write nothing.")
@click.option("--quarantine", "quarantine_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Copy blocked images here and log them in DIR/audit.jsonl (default with --regenerate: "
                   "<out>/quarantine).")
@click.option("--quarantine-move", is_flag=True, help="Move blocked images into the quarantine instead of copying.")
@run_options
def gate(paths: tuple[str, ...], policy: str | None, min_clip: float | None, min_aesthetic: float | None,
         max_nsfw: float | None, checks: tuple[str, ...], rules: tuple[str, ...], resolution: str | None,
         min_pass_rate: float | None, allow_errors: bool | None, out_dir: str | None, as_json: bool,
         **regen_opts: Any) -> None:
    """Give each image a verdict (pass / reseed / reprompt / restore_face / block / error).

    PATHS are folders (recursive), globs, image files or CSV/JSONL manifests.
    Exits 1 when the batch fails the policy.
    """
    from pathlib import Path

    from sdeval import api
    from sdeval.cli_output import Progress, print_gate_summary

    opts = build_run_options(**{k: regen_opts.pop(k) for k in RUN_OPTION_NAMES})
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
    out = Path(out_dir) if out_dir else api.default_out_dir("gate")
    settings = _regenerate_settings(regen_opts)
    dry_run = settings is not None and settings.dry_run
    with Progress("evaluating") as progress:
        result = api.gate(list(paths), pol, options=opts, out_dir=None if dry_run else out, progress=progress)
    if settings is not None:
        if dry_run and out.is_dir():  # plan from where an earlier run of this command stopped
            from dataclasses import replace

            result = replace(result, out_dir=out)
        result = _act_on_verdicts(result, settings, opts, as_json)
        if dry_run:
            print_gate_summary(result, err=True)
            sys.exit(EXIT_OK if result.passed else EXIT_FAILED)
    if as_json:
        from sdeval.reports.writers import to_json

        click.echo(to_json(result.summary))
        print_gate_summary(result, err=True)
    else:
        print_gate_summary(result, err=False)
    sys.exit(EXIT_OK if result.passed else EXIT_FAILED)


def _regenerate_settings(o: dict[str, Any]) -> Any:
    """RegenerateSettings from the gate's regeneration flags; None when none of them asks for action."""
    from sdeval.errors import UsageError

    backend = o["regen_backend"]
    if backend is None:
        needs = [f"--{k.replace('_', '-')}" for k in ("comfy_url", "a1111_url", "max_attempts", "workflow",
                                                      "concurrency", "generation_timeout", "dry_run")
                 if o.get(k) not in (None, False)]
        if needs:
            raise UsageError(f"{', '.join(needs)} only make sense with --regenerate comfyui|a1111")
        if o["quarantine_move"] and not o["quarantine_dir"]:
            raise UsageError("--quarantine-move needs --quarantine DIR (or --regenerate)")
        if not o["quarantine_dir"]:
            return None
    from sdeval.gates.regenerate import RegenerateSettings

    url = o["a1111_url"] if backend == "a1111" else o["comfy_url"]
    if backend == "a1111" and o["comfy_url"] or backend == "comfyui" and o["a1111_url"]:
        raise UsageError(f"--{'comfy' if backend == 'a1111' else 'a1111'}-url does not apply to "
                         f"--regenerate {backend}")
    kw: dict[str, Any] = {"backend": backend or "comfyui", "url": url, "workflow": o["workflow"],
                          "dry_run": o["dry_run"], "quarantine_dir": o["quarantine_dir"],
                          "quarantine_move": o["quarantine_move"], "regenerate": backend is not None}
    for key in ("max_attempts", "concurrency", "generation_timeout"):
        if o[key] is not None:
            kw[key] = o[key]
    return RegenerateSettings(**kw)


def _act_on_verdicts(result: Any, settings: Any, opts: Any, as_json: bool) -> Any:
    """Run the regeneration loop (or its dry run) with progress on stderr; returns the final result."""
    from sdeval.cli_output import Progress
    from sdeval.gates.regenerate import regenerate

    def on_attempt(a: Any) -> None:
        what = f"{a['verdict']}" if a.get("verdict") else f"error: {a.get('error')}"
        _err(f"  {a['image']}: attempt {a['attempt']} ({a['mutation']}, seed {a['seed']}) -> {what}")

    with Progress("regenerating") as progress:
        outcome = regenerate(result, settings, options=opts, progress=progress, on_attempt=on_attempt)
    if settings.dry_run:
        from sdeval.reports.writers import to_json

        planned = [p.as_dict() for p in outcome.planned]
        click.echo(to_json({"planned": planned, "summary": outcome.gate.summary} if as_json else planned))
        for row in outcome.gate.rows:
            regen = row.get("regeneration") or {}
            if regen.get("status") not in (None, "planned"):
                _err(f"{row['path']}: not regenerated ({regen['status']}): {regen.get('reason')}")
            elif (row.get("quarantine") or {}).get("planned"):
                _err(f"{row['path']}: would be quarantined")
    else:
        s = outcome.gate.summary.get("regeneration") or {}
        if s.get("enabled"):
            rate = s["acceptance_rate"]
            _err(f"regeneration: {s['accepted']}/{s['images']} image(s) accepted"
                 + (f" ({rate:.0%})" if rate is not None else "")
                 + f", {s['attempts']} attempt(s), {s['generation_seconds']:.1f} s generating"
                 + (f", {s['resumed_attempts']} resumed" if s["resumed_attempts"] else "")
                 + (f"; server {s['backend']} {s['server_version']}" if s.get("server_version") else ""))
        if s.get("quarantined"):
            _err(f"quarantined: {s['quarantined']} image(s) in {s['quarantine_dir']}")
    return outcome.gate


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


# -- models and cache --------------------------------------------------------------------------

@main.group()
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
    from sdeval.cli_output import FetchProgressBar
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


@main.group()
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


# -- eval and reference statistics: bodies in sdeval/cli_eval.py ---------------------------------
from sdeval.cli_eval import add_eval_commands  # noqa: E402

add_eval_commands(main)


def run() -> None:  # pragma: no cover - console entry used by python -m sdeval
    main(prog_name="sdeval")


if __name__ == "__main__":  # pragma: no cover
    run()
