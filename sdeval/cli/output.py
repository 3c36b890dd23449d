"""What the CLI shows a person: progress on stderr and the summary tables (rich).

Kept apart from the library: nothing below cli/ prints; this module is the CLI's own. Paths, prompts,
reasons and warnings come from files sdeval did not write: every such string goes through
:func:`plain` (rich markup escaped, unencodable characters escaped) before it reaches rich.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """A rich progress bar on a terminal; a line every ~10 % (and at the end) when not a TTY."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None
        self._task: Any = None
        self._last_pct = -1
        self._t0 = time.perf_counter()

    def __enter__(self) -> "Progress":
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, \
                TimeRemainingColumn

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._bar.__enter__()
        return self

    def __call__(self, done: int, total: int) -> None:
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(self.label, total=total)
            self._bar.update(self._task, completed=done)
            return
        pct = int(100 * done / total) if total else 100
        if pct // 10 > self._last_pct // 10 or done == total:
            self._last_pct = pct
            rate = done / max(time.perf_counter() - self._t0, 1e-9)
            print(f"{self.label}: {done}/{total} images ({rate:.1f}/s)", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def plain(value: Any) -> str:
    """An untrusted string as literal rich text: ``[`` never opens markup, lone surrogates never crash."""
    from rich.markup import escape

    from sdeval.core.io import safe_text

    return escape(safe_text(str(value)))


_STYLE = {"pass": "green", "reseed": "yellow", "reprompt": "yellow", "restore_face": "yellow",
          "block": "red", "error": "magenta"}


def print_gate_summary(result: Any, err: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=err, highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)
    s = result.summary
    counts = Table(title="verdicts", title_justify="left")
    counts.add_column("verdict")
    counts.add_column("images", justify="right")
    for verdict, n in s["counts"].items():
        if n:
            counts.add_row(f"[{_STYLE[verdict]}]{verdict}[/]", str(n))
    console.print(counts)
    if s["top_reasons"]:
        reasons = Table(title="most frequent reasons", title_justify="left")
        reasons.add_column("reason")
        reasons.add_column("images", justify="right")
        for item in s["top_reasons"]:
            reasons.add_row(plain(item["reason"]), str(item["count"]))
        console.print(reasons)
    if s["worst"]:
        worst = Table(title="worst images", title_justify="left")
        worst.add_column("image", overflow="fold")
        worst.add_column("verdict")
        worst.add_column("reasons", overflow="fold")
        for item in s["worst"]:
            worst.add_row(plain(item["path"]), f"[{_STYLE[item['verdict']]}]{item['verdict']}[/]",
                          plain("; ".join(item["reasons"])))
        console.print(worst)
    inputs = s["inputs"]
    notes = []
    if inputs["skipped_non_images"]:
        notes.append(f"{sum(inputs['skipped_non_images'].values())} non-image file(s) skipped")
    if inputs["duplicates"]:
        notes.append(f"{len(inputs['duplicates'])} byte-identical duplicate(s)")
    t = s["timing"]
    notes.append(f"{s['images']} images in {t['seconds']:.2f} s ({t['images_per_second']} images/s)")
    console.print("; ".join(notes))
    for problem in dict.fromkeys(s.get("cache_problems") or ()):
        console.print(f"[yellow]warning:[/] {plain(problem)}")
    v = s["verdict"]
    status = "[green]PASSED[/]" if v["passed"] else "[red]FAILED[/]"
    why = f": {plain('; '.join(v['reasons']))}" if v["reasons"] else ""
    console.print(f"gate {status} (pass rate {v['pass_rate']:.1%}){why}")
    if s.get("out_dir"):
        console.print(f"results: {plain(s['out_dir'])}/results.jsonl, results.csv, summary.json")


def print_eval_summary(result: Any, err: bool) -> None:
    """Set-level values, per-image distributions, warnings and the --fail-if outcome (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=err, highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)
    s = result.summary
    if s["set_metrics"]:
        t = Table(title="set-level metrics", title_justify="left")
        for col in ("metric", "value", "details"):
            t.add_column(col)
        for name, entry in s["set_metrics"].items():
            value = entry.get("value")
            details = []
            for key in ("std", "n_generated", "n_reference", "subset_size", "groups", "pairs"):
                if entry.get(key) is not None:
                    v = entry[key]
                    details.append(f"{key}={v:.4g}" if isinstance(v, float) else f"{key}={v}")
            t.add_row(plain(name), "-" if value is None else f"{value:.6g}", " ".join(details))
        console.print(t)
    if s["metrics"]:
        t = Table(title="per-image metrics", title_justify="left")
        for col in ("metric", "n", "mean", "min", "median", "max"):
            t.add_column(col)
        for name, d in s["metrics"].items():
            fmt = (lambda k: "-" if d.get(k) is None else f"{d[k]:.4g}")  # noqa: E731
            t.add_row(plain(name), str(d["n"]), fmt("mean"), fmt("min"), fmt("median"), fmt("max"))
        console.print(t)
    for w in (*s["warnings"], *dict.fromkeys(s.get("cache_problems") or ())):
        console.print(f"[yellow]warning:[/] {plain(w)}")
    t = s["timing"]
    console.print(f"{s['images']} generated images in {t['seconds']:.2f} s")
    if s["fail_if"]:
        status = "[red]FAILED[/]" if s["failures"] else "[green]PASSED[/]"
        why = f": {plain('; '.join(s['failures']))}" if s["failures"] else ""
        console.print(f"eval {status}{why}")
    if s.get("out_dir"):
        console.print(f"results: {plain(s['out_dir'])}/results.jsonl, results.csv, summary.json")


_DECISION_STYLE = {"improved": "green", "regressed": "red", "no_change": "dim", "non_inferior": "green",
                   "inconclusive": "yellow"}


def _num(v: Any, fmt: str = ".4g") -> str:
    import math

    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(float(v), fmt)


def print_compare_summary(result: Any, err: bool) -> None:
    """Pairing counts, one line per (arm, metric) test, rankings, warnings and the verdict (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=err, highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 140)
    r = result.report
    pairing = Table(title=f"pairing (by {plain(r['pairing']['pair_by'])}; baseline {plain(r['baseline'])})",
                    title_justify="left")
    for col in ("arm", "images", "baseline images", "pairs", "prompts", "unpaired (arm/baseline)", "ambiguous keys"):
        pairing.add_column(col, justify="left" if col == "arm" else "right")
    for c in r["pairing"]["comparisons"]:
        rules = ", ".join(f"{k} {v}" for k, v in c["rules"].items() if k not in ("key", "filename"))
        pairing.add_row(plain(c["arm"]), str(c["arm_images"]), str(c["baseline_images"]), str(c["pairs"]),
                        str(c["clusters"]), f"{c['unpaired_arm']}/{c['unpaired_baseline']}",
                        str(c["ambiguous_keys"]) + (f" ({plain(rules)})" if rules else ""))
    console.print(pairing)
    conf = int(round(100 * (1 - r["settings"]["alpha"])))
    t = Table(title="metrics (delta: positive = better than the baseline)", title_justify="left")
    for col in ("metric", "arm", "baseline", "arm value", "delta", f"{conf}% CI", "p", "Holm p", "decision"):
        t.add_column(col, justify="right" if col in ("arm value", "baseline", "delta", "p", "Holm p") else "left")
    for m in r["metrics"]:
        d = m.get("decision") or "-"
        t.add_row(plain(m["metric"]), plain(m["arm"]), _num(m.get("mean_baseline")), _num(m.get("mean_arm")),
                  _num(m.get("delta"), "+.4g"), f"[{_num(m.get('ci_low'))}, {_num(m.get('ci_high'))}]",
                  _num(m.get("p"), ".3g"), _num(m.get("p_adjusted"), ".3g"),
                  f"[{_DECISION_STYLE.get(d, 'white')}]{plain(d)}[/]")
    console.print(t)
    for ranking in r.get("rankings") or []:
        order = " > ".join(plain(a) for a in ranking["order"])
        best = f"best: {plain(ranking['best'])}" if ranking["best"] else "no arm is best with this data"
        console.print(f"ranking {plain(ranking['metric'])}: {order} ({best})")
    for w in (*r["warnings"], *dict.fromkeys(r.get("cache_problems") or ())):
        console.print(f"[yellow]warning:[/] {plain(w)}")
    v = r["verdict"]
    if v["regression"]:
        status = "[red]REGRESSION[/]" + ("" if v["fail_on_regression"] else " (not failing: no --fail-on-regression)")
        console.print(f"compare {status}: {plain('; '.join(v['reasons']))}")
    else:
        console.print("compare [green]NO REGRESSION[/]: no metric regressed against "
                      f"'{plain(r['baseline'])}' at alpha {r['settings']['alpha']:g} (Holm)")
    if r.get("out_dir"):
        console.print(f"results: {plain(r['out_dir'])}/compare.json, metrics.csv, pairs.csv, unpaired.csv")


class FetchProgressBar:
    """Download progress for ``sdeval models fetch`` (rich bar on a TTY, a line per event otherwise)."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> "FetchProgressBar":
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress as RichProgress, TextColumn, \
                TransferSpeedColumn

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), console=Console(stderr=True))
            self._bar.__enter__()
        return self

    def __call__(self, event: Any) -> None:
        if self._bar is None:
            if event.stage != "download":
                msg = f" {event.message}" if event.message else ""
                print(f"{event.model_id}: {event.stage}{msg}", file=sys.stderr, flush=True)
            return
        task = self._tasks.get(event.model_id)
        if task is None:
            task = self._tasks[event.model_id] = self._bar.add_task(event.model_id, total=event.bytes_total)
        self._bar.update(task, completed=event.bytes_done, total=event.bytes_total,
                         description=f"{event.model_id} {event.stage}")

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
