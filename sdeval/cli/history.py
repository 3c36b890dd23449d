"""``sdeval history``: list, show, trend, diff, alerts, export, prune, add, report over a run history."""

from __future__ import annotations

import math
from typing import Any, Callable

import click

from sdeval.cli.common import err, printable


def _store_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON to stdout instead of a table.")(fn)
    return click.option("--history", "location", metavar="PATH|URL",
                        help="The history (default: SDEVAL_HISTORY, else url in [tool.sdeval.history]).")(fn)


def _echo_json(value: Any, indent: int | None = 2) -> None:
    from sdeval.core.io import to_json

    click.echo(to_json(value, indent=indent))


def _open(location: str | None) -> Any:
    """The store (flag, else SDEVAL_HISTORY, else the config); without importing the run machinery."""
    from sdeval.history.config import history_location
    from sdeval.history.store import open_store

    return open_store(history_location(location))


def _num(v: Any, width: int = 10) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-".rjust(width)
    if isinstance(v, float):
        return f"{v:.6g}".rjust(width)
    return str(v).rjust(width)


def _tags(tags: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items()))


@click.group("history")
def history() -> None:
    """The run history: what eval/gate/compare --history recorded, its trends and regression alerts.

    \b
    Exit codes: 0 done, 1 (alerts --fail) an alert is listed, 2 usage error or an unreadable history
    (a database from a newer sdeval is refused), 3 internal error.
    """


@history.command("list")
@_store_option
@click.option("--label", metavar="NAME", help="Only this series.")
@click.option("--last", type=click.IntRange(1), metavar="N", help="Only the newest N runs.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only runs with this tag (repeatable).")
def list_command(location: str | None, as_json: bool, label: str | None, last: int | None,
                 tags: tuple[str, ...]) -> None:
    """Runs, oldest first."""
    from sdeval.history.config import parse_tags
    from sdeval.history.queries import list_runs

    with _open(location) as store:
        runs = list_runs(store, label=label, last=last, tag=parse_tags(tags))
    if as_json:
        _echo_json({"runs": runs})
        return
    click.echo(f"{'id':>5}  {'started (UTC)':19}  {'label':20}  {'command':8}  {'images':>6}  exit  "
               f"{'protocol':8}  {'commit':8}  tags")
    for r in runs:
        click.echo(f"{r['id']:>5}  {r['started_at'][:19]:19}  {printable(r['label'])[:20]:20}  {r['command']:8}  "
                   f"{_num(r['n_images'], 6)}  {_num(r['exit_status'], 4)}  {r['protocol_hash'][:8]:8}  "
                   f"{(r['git_commit'] or '-')[:8]:8}  {printable(_tags(r['tags']))}")
    if not runs:
        err("no runs")


@history.command("show")
@click.argument("run")
@_store_option
@click.option("--images", "with_images", is_flag=True, help="Also the per-image rows (--history-images).")
def show_command(run: str, location: str | None, as_json: bool, with_images: bool) -> None:
    """One run (its id, 'latest' or a uid prefix): every value, its protocol, tags and alerts."""
    from sdeval.history.queries import run_images_of, show_run

    with _open(location) as store:
        shown = show_run(store, run)
        if with_images:
            shown["images"] = run_images_of(store, run)
    if as_json:
        _echo_json(shown)
        return
    for key in ("id", "uid", "label", "command", "started_at", "ended_at", "host", "git_commit", "sdeval_version",
                "protocol_hash", "n_images", "exit_status", "out_dir", "command_line"):
        click.echo(f"{key:15} {printable(shown.get(key))}")
    click.echo(f"{'tags':15} {printable(_tags(shown['tags']))}")
    click.echo(f"\n{'value':36} {'value':>12} {'interval':>27}  watched")
    for v in shown["values"]:
        interval = f"[{v['lo']:.5g}, {v['hi']:.5g}]" if v["lo"] is not None and v["hi"] is not None else ""
        click.echo(f"{printable(v['name'])[:36]:36} {_num(v['value'], 12)} {interval:>27}  {'*' if v['watched'] else ''}")
    for a in shown["alerts"]:
        click.echo(f"ALERT {printable(a['metric'])}: {printable(a['message'])}")
    for img in shown.get("images") or ():
        click.echo(f"{img['content_hash'][:12]}  {str(img['verdict'] or ''):12}  {printable(img['path'])}")


@history.command("trend")
@click.argument("metric")
@_store_option
@click.option("--label", metavar="NAME", help="The series (needed when the history has several).")
@click.option("--last", type=click.IntRange(1), metavar="N", help="Only the newest N runs.")
def trend_command(metric: str, location: str | None, as_json: bool, label: str | None, last: int | None) -> None:
    """METRIC over the runs of one label: a table and a sparkline (┊ marks a protocol break).

    Change points (ruptures PELT) are marked 'step', alerts 'ALERT'.
    """
    from sdeval.history.trend import sparkline, trend

    with _open(location) as store:
        t = trend(store, metric, label=label, last=last)
    data = t.as_dict()
    if as_json:
        _echo_json(data, indent=None)  # one line: 10,000 points through json's C encoder
        return
    click.echo(f"{printable(t.metric)} · {printable(t.label)} · {len(t.points)} run(s)")
    click.echo(f"{'run':>5}  {'started (UTC)':19}  {'value':>12}  {'interval':>25}  {'protocol':8}  marks")
    for p in data["points"]:
        interval = f"[{p['lo']:.5g}, {p['hi']:.5g}]" if p["lo"] is not None and p["hi"] is not None else ""
        marks = " ".join(m for m, on in (("break", p["break"]), ("step", p["change_point"]),
                                         ("ALERT", p["alert"])) if on)
        click.echo(f"{p['run']:>5}  {p['started_at'][:19]:19}  {_num(p['value'], 12)}  {interval:>25}  "
                   f"{p['protocol_hash'][:8]:8}  {marks}")
    click.echo(sparkline(data["points"]))


@history.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@_store_option
@click.option("--all", "show_all", is_flag=True, help="Also values that did not change.")
def diff_command(run_a: str, run_b: str, location: str | None, as_json: bool, show_all: bool) -> None:
    """Every value of two runs side by side, B − A."""
    from sdeval.history.queries import diff_runs

    with _open(location) as store:
        d = diff_runs(store, run_a, run_b)
    if as_json:
        _echo_json(d)
        return
    if not d["same_protocol"]:
        click.echo("note: the two runs have different protocols: their numbers are not comparable")
    for k, (x, y) in d["tags_changed"].items():
        click.echo(f"tag {printable(k)}: {printable(x)} -> {printable(y)}")
    click.echo(f"{'value':36} {'A':>12} {'B':>12} {'B - A':>12}  change")
    for v in d["values"]:
        if show_all or v["delta"]:
            click.echo(f"{printable(v['name'])[:36]:36} {_num(v['a'], 12)} {_num(v['b'], 12)} "
                       f"{_num(v['delta'], 12)}  {v['change'] or ''}")


@history.command("alerts")
@_store_option
@click.option("--label", metavar="NAME", help="Only this series.")
@click.option("--last", type=click.IntRange(1), metavar="N", help="Only the alerts of the newest N alerted runs.")
@click.option("--fail", is_flag=True, help="Exit 1 when any alert is listed.")
def alerts_command(location: str | None, as_json: bool, label: str | None, last: int | None, fail: bool) -> None:
    """Regression alerts that fired when runs were recorded, newest first."""
    import sys

    from sdeval.history.queries import list_alerts

    with _open(location) as store:
        found = list_alerts(store, label=label, last=last)
    if as_json:
        _echo_json({"alerts": found})
    else:
        for a in found:
            click.echo(f"run {a['run']:>5}  {a['started_at'][:19]}  {printable(a['label'])}  "
                       f"{printable(a['metric'])}: {printable(a['message'])}")
        if not found:
            err("no alerts")
    sys.exit(1 if fail and found else 0)


@history.command("export")
@_store_option
@click.option("--csv", "as_csv", is_flag=True, help="CSV (the default), one row per run and value.")
@click.option("--label", metavar="NAME", help="Only this series.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), metavar="FILE", help="Write here, not stdout.")
def export_command(location: str | None, as_json: bool, as_csv: bool, label: str | None,
                   out_file: str | None) -> None:
    """Every recorded value (long format). Text cells are guarded against spreadsheet formulas."""
    from pathlib import Path

    from sdeval.core.io import atomic_write_bytes, json_bytes
    from sdeval.history.queries import export_rows
    from sdeval.results.files import csv_bytes

    with _open(location) as store:
        rows, columns = export_rows(store, label=label)
    data = json_bytes({"columns": columns, "rows": rows}) if as_json and not as_csv else csv_bytes(rows, columns)
    if out_file:
        atomic_write_bytes(Path(out_file), data)
        err(f"{len(rows)} row(s) written to {printable(out_file)}")
    else:
        click.echo(data.decode("utf-8"), nl=False)


@history.command("prune")
@_store_option
@click.option("--keep", type=click.IntRange(0), metavar="N", help="Keep the newest N runs of each label.")
@click.option("--before", metavar="DATE", help="Delete runs started before DATE (YYYY-MM-DD or ISO 8601, UTC).")
@click.option("--label", metavar="NAME", help="Only this series.")
def prune_command(location: str | None, as_json: bool, keep: int | None, before: str | None,
                  label: str | None) -> None:
    """Delete old runs (and their values, tags, image rows and alerts)."""
    from sdeval.history.queries import prune

    with _open(location) as store:
        done = prune(store, keep=keep, before=before, label=label)
    if as_json:
        _echo_json(done)
    else:
        click.echo(f"{done['deleted']} run(s) deleted")


@history.command("add")
@click.argument("result_dir", type=click.Path(file_okay=False, exists=True))
@_store_option
@click.option("--label", metavar="NAME", help="The series (default: the command).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag (repeatable).")
@click.option("--history-images", "images", is_flag=True, default=None, help="Also store per-image rows.")
@click.option("--gpu-cost-per-hour", type=click.FloatRange(min=0), metavar="X", help="For the cost per accepted image.")
@click.option("--alert-on-regression", is_flag=True, default=None, help="Exit 1 when an alert fires.")
@click.option("--notify", metavar="URL", help="POST fired alerts to this webhook.")
def add_command(result_dir: str, location: str | None, as_json: bool, label: str | None, tags: tuple[str, ...],
                images: bool | None, gpu_cost_per_hour: float | None, alert_on_regression: bool | None,
                notify: str | None) -> None:
    """Record an existing result folder (a run made without --history, or one whose recording failed)."""
    import sys

    from sdeval import api
    from sdeval.cli.common import record_history

    settings = api.history_settings(url=location, label=label, tags=tags, images=images,
                                    gpu_cost_per_hour=gpu_cost_per_hour, notify=notify,
                                    alert_on_regression=alert_on_regression)
    if settings.url is None:
        from sdeval.core.errors import UsageError

        raise UsageError("no history given: --history PATH|URL, SDEVAL_HISTORY=..., or url in "
                         "[tool.sdeval.history]")
    if as_json:
        recorded = api.record_history(result_dir, settings)
        assert recorded is not None
        _echo_json(recorded.as_dict())
        sys.exit(1 if recorded.alerts and settings.alert_on_regression else 0)
    sys.exit(record_history(result_dir, settings, 0))


@history.command("report")
@click.option("--history", "location", metavar="PATH|URL", help="The history (default: SDEVAL_HISTORY / config).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), metavar="FILE", default="dashboard.html",
              show_default=True, help="The HTML file to write.")
@click.option("--last", type=click.IntRange(1), metavar="N", help="Only the newest N runs of each label.")
def report_command(location: str | None, out_file: str, last: int | None) -> None:
    """A self-contained HTML dashboard: per label, every watched value over time, protocol breaks,
    change points and alerts marked; pass rate, NSFW rate, throughput and cost per accepted image."""
    from sdeval import api

    path = api.history_report(location, out_file, last=last)
    err(f"dashboard: {printable(path)}")
