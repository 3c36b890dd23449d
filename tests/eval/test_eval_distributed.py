"""``torchrun --nproc-per-node 2 -m sdeval eval``: 2 CPU processes on gloo give one process's results.

Inputs are sharded unevenly (9 images over 2 ranks), per-image rows are gathered on rank 0, FID
moments are merged in float64, KID's bank is re-sorted by path, LPIPS diversity groups are spread
over the ranks. Only rank 0 writes the result folder.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import torch  # noqa: F401
import lpips  # noqa: F401
sys.path.insert(0, str(Path(__file__).parent))
from eval_models import (restore_offline, save_inception_standin, save_tv_backbone,  # noqa: E402,F401
                         write_images)

from sdeval.evaluate.set_eval import eval_set  # noqa: E402
from sdeval.pipeline.run import RunOptions  # noqa: E402

METRICS = "fid,kid,lpips_diversity,lpips_ref"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process(tmp_path: Path) -> None:
    inception = save_inception_standin(tmp_path / "w", seed=2)
    backbone = save_tv_backbone(tmp_path / "w", "alex", seed=3)
    names = [f"p{i}.png" for i in range(9)]
    gen = write_images(tmp_path / "gen", 9, seed=51, names=names)
    write_images(tmp_path / "ref", 8, seed=52, names=names[:8])
    manifest = tmp_path / "gen.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "group"])
        for i, p in enumerate(gen):
            w.writerow([str(p), f"prompt-{i % 3}"])
    model_paths = {"inception-2015-12-05": str(inception), "lpips-alex": str(backbone)}

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank below: float32 kernels then sum in the same order
    try:
        single = eval_set(str(manifest), ref=str(tmp_path / "ref"), metrics=METRICS, out_dir=tmp_path / "one",
                          options=RunOptions(batch_size=4, workers=1, cache=False,
                                             metric_options={"device": "cpu", "model_paths": model_paths,
                                                             "lpips_size": 64}),
                          distributed=False)
    finally:
        torch.set_num_threads(threads)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "sdeval", "eval", str(manifest), "--ref", str(tmp_path / "ref"), "--metrics", METRICS,
           "--out", str(tmp_path / "two"), "--batch-size", "4", "--workers", "1", "--no-cache", "--device", "cpu",
           "--lpips-size", "64", "--fail-if", "fid > 1e9", "--json"]
    for mid, p in model_paths.items():
        cmd += ["--model-path", f"{mid}={p}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    printed = json.loads(proc.stdout)  # only rank 0 prints
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert printed["values"] == two["values"]
    assert two["protocol"]["distributed"] == {"world_size": 2}

    one_rows, two_rows = _rows(tmp_path / "one" / "results.jsonl"), _rows(tmp_path / "two" / "results.jsonl")
    assert two_rows == one_rows  # same order, same values, lpips_ref included
    assert one_rows[-1]["lpips_ref"] is None and one_rows[-1]["path"].endswith("p8.png")  # no reference

    vals = single.values
    # moments merged across ranks: equal up to float64 summation order; banks and groups: exactly equal
    assert two["values"]["fid"] == pytest.approx(vals["fid"], rel=1e-12)
    assert two["values"]["kid"] == vals["kid"]
    assert two["values"]["lpips_diversity"] == vals["lpips_diversity"]
    for key in ("n_generated", "n_reference"):
        assert two["set_metrics"]["fid"][key] == single.set_metrics["fid"][key]
    assert two["set_metrics"]["lpips_diversity"]["groups"] == 3
    assert two["features"]["inception"] == {"cache_hits": 0, "computed": 9}
