"""`make bench` (benchmarks/run_all.py): every benchmark is run, ratios come back, goals are judged."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import ratios  # noqa: E402
import run_all  # noqa: E402


def test_every_benchmark_script_is_run_by_run_all():
    assert run_all.unlisted() == []
    for bench in run_all.BENCHMARKS:
        assert (BENCH / bench.script).is_file(), bench.script
        assert bench.small, f"{bench.name} needs small-size flags"


def test_record_writes_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(ratios.ENV, raising=False)
    ratios.record("a / b", 2.0)  # a benchmark run by hand: nothing written, nothing raised
    out = tmp_path / "r.jsonl"
    monkeypatch.setenv(ratios.ENV, str(out))
    ratios.record("a / b", 2.0, ">= 1.5")
    ratios.record("c / d", float("nan"))
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"compared": "a / b", "ratio": 2.0, "goal": ">= 1.5"}, {"compared": "c / d", "ratio": None, "goal": None}]
    with pytest.raises(ValueError, match="not a comparison"):
        ratios.record("a / b", 1.0, "fast")


@pytest.mark.parametrize("ratio, goal, met", [
    (0.95, ">= 0.9", True), (0.85, ">= 0.9", False), (0.02, "<= 0.02", True), (0.03, "<= 0.02", False),
    (1.0, "> 1", False), (1.0, None, None), (None, ">= 1", None),
])
def test_goal_met(ratio, goal, met):
    assert ratios.goal_met(ratio, goal) is met


def test_table_shows_ratios_goals_and_failures():
    ok = run_all.Outcome(run_all.BENCHMARKS[0], ({"compared": "x / y", "ratio": 4.25, "goal": None},
                                                 {"compared": "recall", "ratio": 0.8, "goal": ">= 0.9"}), 1.0, 0, "")
    broken = run_all.Outcome(run_all.BENCHMARKS[1], (), 3.0, 2, "Traceback ...")
    text = run_all.table([ok, broken])
    lines = text.splitlines()
    assert lines[0].split() == ["benchmark", "compared", "ratio", "goal", "met"]
    assert any("x / y" in line and "4.25" in line for line in lines)
    assert any("recall" in line and ">= 0.9" in line and line.endswith("NO") for line in lines)
    assert any(run_all.BENCHMARKS[1].name in line and "FAILED (exit 2" in line for line in lines)
    assert broken.failed and not ok.failed


def test_a_benchmark_that_records_nothing_fails_the_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "quiet.py").write_text("print('no ratios here')\n")
    bench = run_all.Benchmark("quiet", "quiet.py", ("--n", "1"))
    monkeypatch.setattr(run_all, "HERE", tmp_path)
    outcome = run_all.run_one(bench, tmp_path / "scratch", timeout=60, verbose=False)
    assert outcome.returncode == 0 and outcome.rows == () and outcome.failed
    (tmp_path / "loud.py").write_text(
        "import sys; sys.path.insert(0, %r)\nfrom ratios import record\nrecord('p / q', 3.0)\n" % str(BENCH))
    outcome = run_all.run_one(run_all.Benchmark("loud", "loud.py", ("{work}",)), tmp_path / "scratch2", 60, False)
    assert outcome.rows == ({"compared": "p / q", "ratio": 3.0, "goal": None},) and not outcome.failed
