"""``torchrun --nproc-per-node 2 -m sdeval compare|gate``: 2 CPU processes on gloo give one process's results.

The arms' images are sharded unevenly over the ranks (15 + 15 images, 2 ranks, batches of 4); rows and
per-image set features are gathered on rank 0, which pairs, tests and writes; only rank 0 prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import torch  # noqa: F401
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
from compare_fixtures import write_arm  # noqa: E402
from eval_models import restore_offline, save_inception_standin  # noqa: E402,F401

PROMPTS = [f"prompt {i}" for i in range(5)]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "sdeval",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)


def _single(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "sdeval", *args], capture_output=True, text=True, env=env,
                          timeout=240)


@pytest.mark.slow
def test_compare_and_gate_under_torchrun_match_one_process(tmp_path: Path) -> None:
    inception = save_inception_standin(tmp_path / "w", seed=2)
    write_arm(tmp_path / "base", prompts=PROMPTS, seeds=(1, 2, 3), rng_seed=1)
    write_arm(tmp_path / "cand", prompts=PROMPTS, seeds=(1, 2, 3), rng_seed=2, degrade=True)
    write_arm(tmp_path / "real", prompts=PROMPTS, seeds=(4, 5), rng_seed=3)
    common = ["--metrics", "pixel_std,contrast,fid,kid", "--ref", str(tmp_path / "real"), "--batch-size", "4",
              "--workers", "1", "--no-cache", "--device", "cpu", "--resamples", "500",
              "--model-path", f"inception-2015-12-05={inception}", "--json"]
    args = ["compare", str(tmp_path / "base"), str(tmp_path / "cand"), *common]
    one = _single(*args, "--out", str(tmp_path / "one"))
    two = _torchrun(*args, "--out", str(tmp_path / "two"))
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    printed = json.loads(two.stdout)  # only rank 0 prints
    a = json.loads((tmp_path / "one" / "compare.json").read_text())
    b = json.loads((tmp_path / "two" / "compare.json").read_text())
    assert printed["metrics"] == b["metrics"]
    assert b["protocol"]["distributed"] == {"world_size": 2} and a["protocol"]["distributed"] == {"world_size": 1}
    # every test, interval and decision; FID reads the reference's moments, merged across ranks in
    # float64 (Chan's update): equal up to summation order, which a rank-9 covariance's square root
    # amplifies to ~1e-8 relative; everything else is exactly equal
    for x, y in zip(a["metrics"], b["metrics"]):
        assert set(x) == set(y)
        for k in x:
            if x["metric"] == "fid" and isinstance(x[k], float):
                assert y[k] == pytest.approx(x[k], rel=1e-6), k
            else:
                assert y[k] == x[k], (x["metric"], k)
    assert b["pairing"] == a["pairing"]
    assert b["features"]["inception"] == {"cache_hits": 0, "computed": 30}
    for arm in a["arms"]:
        assert (tmp_path / "two" / arm["results"]).read_text() == (tmp_path / "one" / arm["results"]).read_text()
    assert (tmp_path / "two" / "pairs.csv").read_text() == (tmp_path / "one" / "pairs.csv").read_text()

    policy = tmp_path / "p.toml"
    policy.write_text('rules = ["contrast < 0.5 -> reseed", "pixel_std < 1 -> block"]\n')
    gate = ["gate", str(tmp_path / "base"), str(tmp_path / "cand"), "--policy", str(policy), "--batch-size", "4",
            "--workers", "1", "--no-cache", "--json"]
    g1 = _single(*gate, "--out", str(tmp_path / "g1"))
    g2 = _torchrun(*gate, "--out", str(tmp_path / "g2"))
    assert g1.returncode == g2.returncode == 1, g2.stdout[-2000:] + g2.stderr[-2000:]  # cand fails contrast
    s1, s2 = json.loads(g1.stdout), json.loads(g2.stdout)
    assert s2["verdict"] == s1["verdict"] and s2["counts"] == s1["counts"]
    assert s2["protocol"]["distributed"] == {"world_size": 2}
    assert (tmp_path / "g2" / "results.jsonl").read_text() == (tmp_path / "g1" / "results.jsonl").read_text()
