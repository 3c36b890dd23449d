"""What every command shares: the run flags (how to run, not what to judge) and stderr messages."""

from __future__ import annotations

import sys
from typing import Any

import click



def err(msg: str) -> None:
    """A line on stderr (stdout stays clean for --json)."""
    click.echo(msg, err=True)


def is_main_rank() -> bool:
    """False on the other ranks of a torchrun job, which compute but do not print."""
    import os

    return os.environ.get("RANK", "0") in ("", "0")


def run_options(fn: Any) -> Any:
    """Options shared by commands that evaluate images (how to run, not what to judge)."""
    decorators = [
        click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True,
                     help="Images per model forward."),
        click.option("--workers", type=click.IntRange(1), help="Decode threads (default: CPU count, at most 8)."),
        click.option("--max-pixels", type=click.IntRange(1),
                     help="Decompression-bomb limit in pixels (default 8192x8192)."),
        click.option("--max-file-bytes", type=click.IntRange(1),
                     help="Largest input file read, in bytes (default 1 GiB); a larger one is an error row."),
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


RUN_OPTION_NAMES = ("batch_size", "workers", "max_pixels", "max_file_bytes", "device", "clip_model", "clip_pretrained",
                    "model_paths", "offline", "no_cache")


def build_run_options(batch_size: int, workers: int | None, max_pixels: int | None, max_file_bytes: int | None,
                      device: str | None,
                      clip_model: str | None, clip_pretrained: str | None, model_paths: tuple[str, ...],
                      offline: bool | None, no_cache: bool) -> Any:
    """RunOptions from the shared flags (offline mode is set before any model library is imported)."""
    from sdeval.inputs.decode import DecodeOptions
    from sdeval.models.registry import parse_model_paths
    from sdeval.pipeline.run import RunOptions

    metric_options: dict[str, Any] = {}
    if offline:
        from sdeval.models import set_offline

        set_offline(True)
        metric_options["offline"] = True
    for key, value in (("device", device), ("clip_model", clip_model), ("clip_pretrained", clip_pretrained)):
        if value:
            metric_options[key] = value
    paths = parse_model_paths(model_paths)
    if paths:
        metric_options["model_paths"] = paths
    kwargs: dict[str, Any] = {"batch_size": batch_size, "metric_options": metric_options, "cache": not no_cache}
    if max_pixels or max_file_bytes:
        decode = DecodeOptions()
        kwargs["decode"] = DecodeOptions(max_pixels=max_pixels or decode.max_pixels,
                                         max_file_bytes=max_file_bytes or decode.max_file_bytes)
    if workers:
        kwargs["workers"] = workers
    return RunOptions(**kwargs)


def set_options(fn: Any) -> Any:
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


def with_metric_options(opts: Any, values: dict[str, Any]) -> Any:
    from dataclasses import replace

    mo = dict(opts.metric_options)
    for key, value in values.items():
        if value not in (None, ()):
            mo[key] = value
    return replace(opts, metric_options=mo)


def history_options(fn: Any) -> Any:
    """Options that append a run to the history and check it (``eval``, ``gate``, ``compare``)."""
    decorators = [
        click.option("--history", "history_url", metavar="PATH|URL",
                     help="Record this run in a history: a SQLite file path, sqlite:///..., or "
                          "postgresql+psycopg://... (also SDEVAL_HISTORY, [tool.sdeval.history] url)."),
        click.option("--label", "history_label", metavar="NAME",
                     help="The series this run belongs to (a checkpoint, a pipeline; default: the command)."),
        click.option("--tag", "history_tags", multiple=True, metavar="KEY=VALUE",
                     help="A tag recorded with the run (repeatable)."),
        click.option("--history-images", is_flag=True, default=None,
                     help="Also store one row per image (keyed by content hash) for drill-down."),
        click.option("--gpu-cost-per-hour", type=click.FloatRange(min=0), metavar="X",
                     help="Record the cost per accepted image of a regeneration run at X per GPU hour."),
        click.option("--alert-on-regression", is_flag=True, default=None,
                     help="Exit 1 when a regression alert fires for this run."),
        click.option("--notify", "history_notify", metavar="URL",
                     help="POST fired alerts to this webhook (Slack/Teams JSON 'text'); a failure is a warning."),
    ]
    for d in reversed(decorators):
        fn = d(fn)
    return fn


def report_options(fn: Any) -> Any:
    """The end-of-run report flags, shared by gate / eval / compare (``sdeval report`` has its own)."""
    decorators = [
        click.option("--no-report", is_flag=True, help="Do not write report.html, junit.xml and summary.md."),
        click.option("--report-format", "report_format", metavar="LIST",
                     help="Report formats written at the end (default html,junit,md; also csv)."),
        click.option("--report-url", metavar="URL",
                     help="URL prefix where the result folder is published (links in summary.md)."),
        click.option("--report-assets", type=click.Path(file_okay=False), metavar="DIR",
                     help="Write thumbnails as files in DIR instead of inside report.html "
                          "(for viewers whose Content-Security-Policy blocks inline images)."),
        click.option("--report-max-images", type=click.IntRange(0), metavar="N",
                     help="Images shown in report.html, the worst first (default 500; all are in the CSV)."),
    ]
    for d in reversed(decorators):
        fn = d(fn)
    return fn


HISTORY_OPTION_NAMES = ("history_url", "history_label", "history_tags", "history_images", "gpu_cost_per_hour",
                        "alert_on_regression", "history_notify")


def history_settings(kw: dict[str, Any], resolve: bool = True) -> Any:
    """Pops the history flags from ``kw``; returns the resolved settings (the store is checked now),
    or None when ``resolve`` is false."""
    from sdeval import api

    o = {k: kw.pop(k) for k in HISTORY_OPTION_NAMES}
    if not resolve:
        return None
    return api.history_settings(url=o["history_url"], label=o["history_label"], tags=o["history_tags"],
                                images=o["history_images"], gpu_cost_per_hour=o["gpu_cost_per_hour"],
                                notify=o["history_notify"], alert_on_regression=o["alert_on_regression"])


def record_history(result_dir: Any, settings: Any, exit_status: int) -> int:
    """Records a finished run (when a history is set), prints what the check found on stderr and
    returns the exit status: 1 when an alert fired under --alert-on-regression, else ``exit_status``."""
    import shlex

    from sdeval import api

    plain = printable
    if settings is None or settings.url is None or result_dir is None:
        return exit_status
    from sdeval.history.store import HistoryError

    try:
        recorded = api.record_history(result_dir, settings, exit_status=exit_status,
                                      command_line=shlex.join(["sdeval", *sys.argv[1:]]))
    except HistoryError as exc:  # the result folder is written: say how to record it later
        raise type(exc)(f"{exc}\n  the result folder {result_dir} is written; record it later with "
                        f"'sdeval history add {result_dir} --history ... --label ...'") from exc
    if recorded is None:
        return exit_status
    run = recorded.run
    err(f"history: recorded run {run['id']} in '{plain(run['label'])}' ({plain(recorded.store)})")
    for note in recorded.notes:
        err(f"history: {plain(note)}")
    for alert in recorded.alerts:
        err(f"history: ALERT {plain(alert.message)}")
    if recorded.notification is not None and recorded.notification.ok:
        err(f"history: alert(s) posted to the webhook ({recorded.notification.attempts} attempt(s))")
    if recorded.alerts and settings.alert_on_regression:
        from sdeval.core.errors import EXIT_FAILED

        return EXIT_FAILED
    return exit_status


def printable(value: Any) -> str:
    """Untrusted text (labels, tags, paths) for a plain terminal line: control characters (terminal
    escape sequences) shown escaped, never sent."""
    from sdeval.core.io import safe_text

    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in safe_text(str(value)))
REPORT_OPTION_NAMES = ("no_report", "report_format", "report_url", "report_assets", "report_max_images")


def build_report_options(formats: str | None, url: str | None, assets: str | None, max_images: int | None,
                         out_dir: str | None = None, human_form: bool = False) -> Any:
    from pathlib import Path

    from sdeval.reports import ReportOptions, parse_formats

    kw: dict[str, Any] = {"formats": parse_formats(formats), "report_url": url, "human_form": human_form}
    if assets:
        kw["assets_dir"] = Path(assets)
    if max_images is not None:
        kw["max_images"] = max_images
    if out_dir:
        kw["out_dir"] = Path(out_dir)
    return ReportOptions(**kw)


def write_report(out_dir: Any, options: Any, *, to_stderr: bool = False) -> Any:
    """Render the result folder's report; under GitHub Actions append the job summary and print the
    annotations (stderr when stdout is kept for --json). Returns the RenderedReport."""
    import os

    from sdeval import api

    summary_file = os.environ.get("GITHUB_STEP_SUMMARY") or None
    rendered = api.report(out_dir, options, step_summary=summary_file)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for a in rendered.annotations:
            click.echo(a.command(), err=to_stderr)
    if rendered.step_summary_cut:
        err("warning: the job summary was cut to stay under GitHub's 1 MiB limit")
    files = ", ".join(str(p) for p in rendered.files.values())
    left = f" ({rendered.left_out} image(s) not shown; all are in the CSV)" if rendered.left_out else ""
    err(f"report: {files}{left}")
    return rendered


def apply_votes(result_dir: Any, votes: Any) -> None:
    """Adds raters' vote CSVs to a compare folder's compare.json (``report --votes``, ``compare --votes``)."""
    from sdeval import api

    human = api.add_votes(result_dir, list(votes))
    err(f"human preference: {human['votes']} vote(s) from {len(human['raters'])} rater(s)")
    for problem in human["problems"][:10]:
        err(f"warning: {problem}")


def end_of_run_report(out_dir: Any, kw: dict[str, Any], *, passed: bool, to_stderr: bool,
                      human_form: bool = False) -> int | None:
    """The report at the end of gate / eval: None when fine, else the exit code to use (a report that
    cannot be written fails a passing run with its code, and never hides a failed gate's 1)."""
    from sdeval.core.errors import SdevalError

    opts = {k: kw.pop(k) for k in REPORT_OPTION_NAMES}
    if opts["no_report"] or out_dir is None:
        return None
    try:
        options = build_report_options(opts["report_format"], opts["report_url"], opts["report_assets"],
                                       opts["report_max_images"], human_form=human_form)
        write_report(out_dir, options, to_stderr=to_stderr)
    except SdevalError as exc:
        err(f"error: report not written: {exc}")
        return None if not passed else exc.exit_code
    return None
