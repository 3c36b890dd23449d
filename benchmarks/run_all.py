"""Run every benchmark at a small size, each in its own process, and print one table of ratios.

    python benchmarks/run_all.py                 # all of them, small sizes (minutes on 2 cores)
    python benchmarks/run_all.py --only fid      # those whose name contains "fid"
    python benchmarks/run_all.py --verbose       # also each benchmark's own report, on stderr

Each benchmark keeps its own report and its own size flags (run one by hand at its default size
for the figures the README quotes); here each gets small ones, so that the whole set shows in a
few minutes whether a ratio still points the right way. Small sizes move ratios: start-up costs
weigh more, and accuracy on a two-photo artifact set is a smoke test, not the published number.
Ratios come back through ``benchmarks/ratios.py`` (one JSON line each, in a file the benchmark is
told about through ``SDEVAL_BENCH_RATIOS``). Every run is offline, with a private model/feature
cache and work folder that are removed afterwards.

Exit status: 1 when a benchmark fails to run or reports no ratio, else 0 (a missed goal is a
result, shown in the table, not a failure of the runner).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from ratios import ENV, goal_met  # noqa: E402


@dataclass(frozen=True)
class Benchmark:
    """One benchmark run: its script (relative to benchmarks/) and the flags that make it small.
    ``{work}`` in a flag is this run's own work folder."""

    name: str
    script: str
    small: tuple[str, ...]


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("frechet_speed", "frechet_speed.py",
              ("--dim", "2048", "--n", "2500", "--repeats", "1", "--kid", "--kid-n", "1000")),
    Benchmark("fid_vs_cleanfid", "fid_vs_cleanfid.py",
              ("--n", "40", "--batch-size", "20", "--workers", "2", "--dir", "{work}")),
    Benchmark("clip_aesthetic_vs_torchmetrics", "clip_aesthetic_vs_torchmetrics.py",
              ("--n", "32", "--batch-size", "16", "--workers", "2")),
    Benchmark("clip_aesthetic_vs_torchmetrics --memory", "clip_aesthetic_vs_torchmetrics.py",
              ("--memory", "40", "160", "--batch-size", "16", "--workers", "2")),
    Benchmark("report_speed", "report_speed.py", ("--n", "100")),
    Benchmark("artifacts", "artifacts/run.py",
              ("--data", "{work}", "--photos", "1", "--no-real", "--throughput", "8", "--workers", "2")),
    Benchmark("hostile_rerun", "hostile_rerun.py", ("--fuzz", "300")),
    Benchmark("compare_calibration", "compare_calibration.py",
              ("--sims", "200", "--resamples", "1000", "--set-sims", "10", "--set-permutations", "200")),
    Benchmark("compare_speed", "compare_speed.py",
              ("--n", "10", "--warm-n", "40", "--batch-size", "10", "--workers", "2", "--dir", "{work}")),
    Benchmark("compare_set_speed", "compare_set_speed.py",
              ("--n", "300", "--dim", "512", "--clip-dim", "128", "--ref", "600", "--fid-timed", "5")),
    # the 87 real ComfyUI outputs of ../shared/calibration (this checkout only: no git-main rerun)
    Benchmark("metadata_recovery", "metadata_recovery.py", ("--only-this",)),
    Benchmark("nsfw", "nsfw/run.py", ("--stored",)),
    Benchmark("history_alerts", "history_alerts.py", ("--years", "10")),
    Benchmark("history_speed", "history_speed.py", ("--runs", "500", "--records", "10")),
)
#: scripts in benchmarks/ that are not benchmarks themselves
HELPERS = frozenset({"run_all.py", "ratios.py", "artifacts/build_set.py"})


@dataclass(frozen=True)
class Outcome:
    benchmark: Benchmark
    rows: tuple[dict, ...]
    seconds: float
    returncode: int
    output: str

    @property
    def failed(self) -> bool:
        return self.returncode != 0 or not self.rows


def unlisted() -> list[str]:
    """Benchmark scripts (a ``__main__`` block) that this runner does not run."""
    listed = {b.script for b in BENCHMARKS} | HELPERS
    found = []
    for path in sorted(HERE.rglob("*.py")):
        rel = path.relative_to(HERE).as_posix()
        if rel not in listed and "__main__" in path.read_text(encoding="utf-8"):
            found.append(rel)
    return found


def run_one(bench: Benchmark, scratch: Path, timeout: float, verbose: bool) -> Outcome:
    """The benchmark in a child process, offline, with a private cache; its recorded ratios."""
    work = scratch / bench.name.replace(" ", "_").replace("-", "")
    work.mkdir(parents=True)
    ratios = work / "ratios.jsonl"
    env = {**os.environ, ENV: str(ratios), "SDEVAL_CACHE_DIR": str(work / "cache"), "SDEVAL_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                               os.environ.get("PYTHONPATH")]))}
    args = [a.replace("{work}", str(work / "data")) for a in bench.small]
    cmd = [sys.executable, str(HERE / bench.script), *args]
    print(f"running {bench.name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        out = out.decode("utf-8", "replace") if isinstance(out, bytes) else out
        code, output = 124, out + f"\n(timed out after {timeout:.0f} s)"
    seconds = time.perf_counter() - t0
    rows = tuple(json.loads(line) for line in ratios.read_text(encoding="utf-8").splitlines()
                 if line.strip()) if ratios.exists() else ()
    if verbose or code != 0 or not rows:
        print(output.rstrip()[-(None if verbose else 3000):], file=sys.stderr)
    print(f"  {bench.name}: {'exit ' + str(code) if code else 'done'} in {seconds:.0f} s, "
          f"{len(rows)} ratio(s)", file=sys.stderr, flush=True)
    return Outcome(bench, rows, seconds, code, output)


def _cell(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def table(outcomes: list[Outcome]) -> str:
    """One text table: benchmark, what is compared, ratio, goal (if stated) and whether it is met."""
    lines = [("benchmark", "compared", "ratio", "goal", "met")]
    for o in outcomes:
        if o.failed:
            why = f"exit {o.returncode}" if o.returncode else "no ratio recorded"
            lines.append((o.benchmark.name, f"FAILED ({why}, {o.seconds:.0f} s)", "–", "", ""))
        for row in o.rows:
            met = goal_met(row.get("ratio"), row.get("goal"))
            lines.append((o.benchmark.name, row["compared"], _cell(row.get("ratio")), row.get("goal") or "",
                          "" if met is None else ("yes" if met else "NO")))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if i != 2 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths))).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], help="run the benchmarks whose name contains this")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per benchmark (default 900)")
    ap.add_argument("--verbose", "-v", action="store_true", help="show each benchmark's own report")
    args = ap.parse_args(argv)

    chosen = [b for b in BENCHMARKS if not args.only or any(o in b.name for o in args.only)]
    if not chosen:
        ap.error(f"no benchmark matches {args.only}; there are: {', '.join(b.name for b in BENCHMARKS)}")
    missing = unlisted()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sdeval-bench-") as scratch:
        outcomes = [run_one(b, Path(scratch), args.timeout, args.verbose) for b in chosen]
    print(table(outcomes))
    print(f"\n{len(chosen)} benchmark run(s) at small sizes in {time.perf_counter() - t0:.0f} s; ratios > 1 "
          "in a 'peer / sdeval' time mean sdeval is faster.")
    for rel in missing:
        print(f"not run: benchmarks/{rel} is not in run_all.BENCHMARKS (add it with its small-size flags)")
    return 1 if missing or any(o.failed for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
