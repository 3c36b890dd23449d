"""``sdeval gate``: verdicts per image, then (optionally) regeneration and quarantine."""

from __future__ import annotations

import sys
from typing import Any

import click

from sdeval.cli.common import (REPORT_OPTION_NAMES, RUN_OPTION_NAMES, build_run_options, end_of_run_report, err,
                               history_options, history_settings, is_main_rank, record_history, report_options,
                               run_options)
from sdeval.core.errors import EXIT_FAILED, EXIT_OK


@click.command()
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
@history_options
@report_options
@run_options
def gate(paths: tuple[str, ...], policy: str | None, min_clip: float | None, min_aesthetic: float | None,
         max_nsfw: float | None, checks: tuple[str, ...], rules: tuple[str, ...], resolution: str | None,
         min_pass_rate: float | None, allow_errors: bool | None, out_dir: str | None, as_json: bool,
         **regen_opts: Any) -> None:
    """Give each image a verdict (pass / reseed / reprompt / restore_face / block / error).

    PATHS are folders (recursive), globs, image files or CSV/JSONL manifests.
    Exits 1 when the batch fails the policy (or, with --history and --alert-on-regression, when a
    regression alert fires). Under `torchrun --nproc-per-node N -m sdeval gate ...` the inputs are
    sharded over the processes (rank 0 judges, regenerates and writes).
    """
    from pathlib import Path

    from sdeval import api
    from sdeval.cli.output import Progress, print_gate_summary

    history = history_settings(regen_opts)
    opts = build_run_options(**{k: regen_opts.pop(k) for k in RUN_OPTION_NAMES})
    report_kw = {k: regen_opts.pop(k) for k in REPORT_OPTION_NAMES}
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
    main_rank = is_main_rank()
    with Progress("evaluating") as progress:
        result = api.gate(list(paths), pol, options=opts, out_dir=None if dry_run else out,
                          progress=progress if main_rank else None)
    if not main_rank:  # torchrun: the other ranks computed their shard; rank 0 judges, acts and prints
        sys.exit(EXIT_OK if result.passed else EXIT_FAILED)
    if settings is not None:
        if dry_run and out.is_dir():  # plan from where an earlier run of this command stopped
            from dataclasses import replace

            result = replace(result, out_dir=out)
        result = _act_on_verdicts(result, settings, opts, as_json, report_kw)
        if dry_run:
            print_gate_summary(result, err=True)
            sys.exit(EXIT_OK if result.passed else EXIT_FAILED)
    if as_json:
        from sdeval.core.io import to_json

        click.echo(to_json(result.summary))
        print_gate_summary(result, err=True)
    else:
        print_gate_summary(result, err=False)
    code = end_of_run_report(result.out_dir, report_kw, passed=result.passed, to_stderr=as_json)
    status = code if code is not None else EXIT_OK if result.passed else EXIT_FAILED
    sys.exit(record_history(result.out_dir, history, status))


def _regenerate_settings(o: dict[str, Any]) -> Any:
    """RegenerateSettings from the gate's regeneration flags; None when none of them asks for action."""
    from sdeval.core.errors import UsageError

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
    if url is not None:  # before anything is evaluated or sent: 'not-a-url' must not become a DNS lookup
        from sdeval.core.http import check_url

        try:
            url = check_url(url, "--a1111-url" if backend == "a1111" else "--comfy-url")
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    kw: dict[str, Any] = {"backend": backend or "comfyui", "url": url, "workflow": o["workflow"],
                          "dry_run": o["dry_run"], "quarantine_dir": o["quarantine_dir"],
                          "quarantine_move": o["quarantine_move"], "regenerate": backend is not None}
    for key in ("max_attempts", "concurrency", "generation_timeout"):
        if o[key] is not None:
            kw[key] = o[key]
    return RegenerateSettings(**kw)


def _act_on_verdicts(result: Any, settings: Any, opts: Any, as_json: bool, report_kw: dict[str, Any]) -> Any:
    """Run the regeneration loop (or its dry run) with progress on stderr; returns the final result."""
    from sdeval.cli.output import Progress, print_gate_summary
    from sdeval.core.errors import SdevalError
    from sdeval.gates.regenerate import partial_result, regenerate

    def on_attempt(a: Any) -> None:
        what = f"{a['verdict']}" if a.get("verdict") else f"error: {a.get('error')}"
        err(f"  {a['image']}: attempt {a['attempt']} ({a['mutation']}, seed {a['seed']}) -> {what}")

    try:
        with Progress("regenerating") as progress:
            outcome = regenerate(result, settings, options=opts, progress=progress, on_attempt=on_attempt)
    except (SdevalError, KeyboardInterrupt) as exc:
        partial = partial_result(exc)
        if partial is None:
            raise
        # the folder was written: say what it holds and how to go on, then exit as the error says
        err("interrupted" if isinstance(exc, KeyboardInterrupt) else f"error: {exc}")
        _explain_unregenerated(partial.rows)
        _print_regeneration_line(partial.summary.get("regeneration") or {})
        if as_json:
            from sdeval.core.io import to_json

            click.echo(to_json(partial.summary))
        print_gate_summary(partial, err=True)
        end_of_run_report(partial.out_dir, report_kw, passed=False, to_stderr=True)  # what finished, to look at
        err(f"rerun the same command to resume (finished attempts are kept in {partial.out_dir})")
        sys.exit(130 if isinstance(exc, KeyboardInterrupt) else exc.exit_code)
    if settings.dry_run:
        from sdeval.core.io import to_json

        planned = [p.as_dict() for p in outcome.planned]
        click.echo(to_json({"planned": planned, "summary": outcome.gate.summary} if as_json else planned))
        for row in outcome.gate.rows:
            regen = row.get("regeneration") or {}
            if regen.get("status") not in (None, "planned"):
                err(f"{row['path']}: not regenerated ({regen['status']}): {regen.get('reason')}")
            elif (row.get("quarantine") or {}).get("planned"):
                err(f"{row['path']}: would be quarantined")
    else:
        _explain_unregenerated(outcome.gate.rows)
        _print_regeneration_line(outcome.gate.summary.get("regeneration") or {})
    return outcome.gate


#: lineage statuses that need no explanation: done, or still to do
_SETTLED = (None, "accepted", "planned", "pending")


def _explain_unregenerated(rows: Any) -> None:
    """One line per image that ended without an accepted regeneration, saying why."""
    for row in rows:
        regen = row.get("regeneration") or {}
        status = regen.get("status")
        if status in _SETTLED:
            continue
        path = (row.get("regenerated_from") or row)["path"]
        attempts = len(regen.get("attempts") or [])
        reason = regen.get("reason")
        if status == "exhausted":
            reason = reason or f"no attempt passed in {attempts} attempt(s)"
        elif status == "blocked":
            reason = reason or f"attempt {attempts} was blocked"
        elif status == "interrupted":
            reason = reason or "the run was interrupted before it finished"
        elif status == "aborted":  # its reason is the error, already printed above
            reason = "the run stopped on the error above"
        after = f" after {attempts} attempt(s)" if attempts and status not in ("exhausted", "blocked") else ""
        err(f"{path}: not regenerated ({status}){after}: {reason}")


def _print_regeneration_line(s: dict[str, Any]) -> None:
    if s.get("enabled"):
        rate = s["acceptance_rate"]
        timing = f", {s['wall_seconds']:.1f} s wall"
        if s.get("execution_seconds") is not None:
            timing += f" (server: {s['execution_seconds']:.1f} s executing"
            timing += f", {s['queue_seconds']:.1f} s queued)" if s.get("queue_seconds") is not None else ")"
        err(f"regeneration: {s['accepted']}/{s['images']} image(s) accepted"
            + (f" ({rate:.0%})" if rate is not None else "")
            + f", {s['attempts']} attempt(s){timing}"
            + (f", {s['resumed_attempts']} resumed" if s["resumed_attempts"] else "")
            + (f"; server {s['backend']} {s['server_version']}" if s.get("server_version") else ""))
    if s.get("quarantined"):
        err(f"quarantined: {s['quarantined']} image(s) in {s['quarantine_dir']}")
