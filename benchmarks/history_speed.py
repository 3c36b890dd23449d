"""How long the history takes: recording one run, and ``trend`` over 10,000 runs.

    python benchmarks/history_speed.py                         # SQLite in a temp dir
    python benchmarks/history_speed.py --runs 2000             # quicker
    python benchmarks/history_speed.py --url postgresql+psycopg://postgres@/bench?host=/tmp/sock

Recording: ``record_result`` of a gate-like run (3 per-image metrics over 64 images, so ~30 values and
an alert check against its series), into a history that already holds ``--runs`` runs; timed as a
command pays it (the store opened and closed each time, git looked up) and with the store kept open.
Goal < 50 ms. Trend: ``sdeval.history.trend.trend`` of one value over all runs of one label (query,
segments, ruptures change points, alert flags) and the whole ``sdeval history trend --json`` command
in a fresh process. Goal < 1 s at 10,000 runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratios import record  # noqa: E402
from sdeval.history.config import HistorySettings  # noqa: E402
from sdeval.history.queries import insert_run  # noqa: E402
from sdeval.history.record import build_record  # noqa: E402
from sdeval.history.service import record_result  # noqa: E402
from sdeval.history.store import open_store  # noqa: E402
from sdeval.history.trend import trend  # noqa: E402

T0 = datetime(2000, 1, 1, tzinfo=timezone.utc)
METRICS = {"clip_score": True, "aesthetic": True, "blur": False}


def run_summary(rng: np.random.Generator, night: int, n: int = 64) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows = []
    for i in range(n):
        r: dict[str, Any] = {"path": f"/night/{night}/img{i}.png", "sha256": f"{night:08x}{i:056x}", "width": 1024,
                             "height": 1024, "error": None, "verdict": "pass"}
        r.update(clip_score=float(rng.normal(0.26, 0.03)), aesthetic=float(rng.normal(5.5, 0.4)),
                 blur=float(abs(rng.normal(0.5, 0.2))))
        rows.append(r)
    summary = {
        "schema_version": 1, "command": "gate", "passed": True,
        "started_at": (T0 + timedelta(days=night)).isoformat(timespec="seconds"), "images": n,
        "counts": {"pass": n, "reseed": 0, "reprompt": 0, "restore_face": 0, "block": 0, "error": 0},
        "metrics": {m: {"n": n} for m in METRICS}, "top_reasons": [],
        "policy": {"rules": [{"metric": "clip_score", "op": "<", "threshold": 0.2, "action": "reprompt"}]},
        "protocol": {"versions": {"sdeval": "0.1.0"},
                     "metrics": {m: {"name": m, "version": "1", "higher_is_better": h} for m, h in METRICS.items()},
                     "features": {"clip": {"id": "clip", "version": "1", "model": "ViT-L-14"}}},
        "timing": {"seconds": 30.0, "images_per_second": n / 30.0},
    }
    return summary, rows


def fill(url: str, runs: int, label: str) -> float:
    """``runs`` runs in batches of 500 per transaction (no git lookup: that is timed in recording)."""
    import sdeval.history.record as rec

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    real_git, rec.git_commit = rec.git_commit, lambda cwd=None: None
    with open_store(url) as store:
        for start in range(0, runs, 500):
            with store.write() as conn:
                for night in range(start, min(runs, start + 500)):
                    s, rows = run_summary(rng, night, n=16)
                    insert_run(conn, build_record(s, rows, label=label))
    rec.git_commit = real_git
    return time.perf_counter() - t0


def timed(fn: Any) -> tuple[float, float]:
    """(wall, CPU of this process) seconds of ``fn()``: on a loaded machine the two differ a lot."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000, help="runs in the history before timing")
    ap.add_argument("--records", type=int, default=30, help="runs recorded while timing")
    ap.add_argument("--url", help="a history URL (default: a SQLite file in a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or str(Path(tmp) / "bench.db")
        label = "nightly"
        filled = fill(url, args.runs, label)
        print(f"history: {url if args.url else 'SQLite (temp file)'}, {args.runs} runs filled in {filled:.1f} s")
        rng = np.random.default_rng(1)
        settings = HistorySettings(label=label)
        cold, warm = [], []
        for i in range(args.records):
            s, rows = run_summary(rng, args.runs + i)
            cold.append(timed(lambda: record_result(url, s, rows=rows, settings=settings)))
        with open_store(url) as store:
            for i in range(args.records):
                s, rows = run_summary(rng, args.runs + args.records + i)
                warm.append(timed(lambda: record_result(store, s, rows=rows, settings=settings)))

        def med(xs: list[tuple[float, float]], i: int) -> float:
            return statistics.median(x[i] for x in xs) * 1000

        rec_cold = med(cold, 0)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"record one run (64 images, {len(build_record(*run_summary(rng, 0)).values)} values + alert check), "
              f"median of {args.records}: opening the store each time {rec_cold:.1f} ms wall / "
              f"{med(cold, 1):.1f} ms CPU; store kept open {med(warm, 0):.1f} ms wall / {med(warm, 1):.1f} ms CPU"
              "   goal < 50 ms")
        times = []
        with open_store(url) as store:
            for _ in range(5):
                out: list[Any] = []
                times.append(timed(lambda: out.append(trend(store, "clip_score", label=label))))
        n_points = len(out[0].points)
        tr_s = statistics.median(t[0] for t in times)
        tr_cpu = statistics.median(t[1] for t in times)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sdeval", "history", "trend", "clip_score", "--label", label,
                        "--history", url, "--json"], check=True, stdout=subprocess.DEVNULL, env=env)
        cli_s = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"trend over {n_points} runs: {tr_s * 1000:.0f} ms wall / {tr_cpu * 1000:.0f} ms CPU in the library "
              "(median of 5); "
              f"'sdeval history trend --json' as a new process: {cli_s:.2f} s wall / {cli_cpu:.2f} s CPU "
              "(most of it imports: sqlalchemy, and scipy through ruptures)   goal < 1 s")
        record("record one run: ms / 50 ms goal", rec_cold / 50.0, "<= 1")
        record("trend over N runs: s / 1 s goal", tr_s, "<= 1")


if __name__ == "__main__":
    main()
