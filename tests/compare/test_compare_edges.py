"""Pairing edge cases through the CLI and the API, config and usage errors: model-free metrics (fast)."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from compare_fixtures import write_arm  # noqa: E402

import sdeval  # noqa: E402
from sdeval.core.errors import NothingPairedError  # noqa: E402
from sdeval.cli import main  # noqa: E402
from sdeval.pipeline.run import RunOptions  # noqa: E402

FAST = ["--workers", "1", "--no-cache"]
PROMPTS = ["a red fox", "a blue bird", "a green frog", "a grey cat"]


def run(*args: str, cwd: Path | None = None) -> Any:
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(main, ["compare", *args, *FAST], catch_exceptions=False)
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(main, ["compare", *args, *FAST], catch_exceptions=False)
    finally:
        os.chdir(old)


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_unpaired_images_are_listed_and_counted(tmp_path: Path) -> None:
    write_arm(tmp_path / "a", prompts=PROMPTS, seeds=(1, 2))
    write_arm(tmp_path / "b", prompts=PROMPTS[:3], seeds=(1, 2, 3), rng_seed=4)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    out = tmp_path / "o"
    r = run(str(tmp_path / "a"), str(tmp_path / "b"), "--metrics", "pixel_std,brightness", "--out", str(out))
    assert r.exit_code == 0, r.output
    report = json.loads((out / "compare.json").read_text())
    (c,) = report["pairing"]["comparisons"]
    assert (c["pairs"], c["clusters"], c["unpaired_arm"], c["unpaired_baseline"]) == (6, 3, 3, 3)
    unpaired = _csv(out / "unpaired.csv")
    assert len(unpaired) == 6
    reasons = {Path(u["path"]).name: u["reason"] for u in unpaired}
    assert "could not be read" in reasons["broken.png"]
    assert sum("no image with this key in 'a'" in r for r in reasons.values()) == 3  # seed 3 only in b
    assert sum("no image with this key in 'b'" in r for r in reasons.values()) == 2  # prompt 4 only in a
    arms = {a["name"]: a for a in report["arms"]}
    assert arms["a"]["images"] == 9 and arms["a"]["errors"] == 1 and arms["a"]["paired_with"] == {"b": 6}
    assert arms["b"]["images"] == 9 and arms["b"]["paired"] == 6 and arms["b"]["unpaired"] == 3


def test_ambiguous_hires_stages_are_paired_by_output_node(tmp_path: Path) -> None:
    for arm, seed in (("a", 0), ("b", 5)):
        write_arm(tmp_path / arm, prompts=PROMPTS, seeds=(1,), rng_seed=seed, names="ComfyUI_base_{p:05d}_.png")
        write_arm(tmp_path / arm, prompts=PROMPTS, seeds=(1,), rng_seed=seed + 1, names="ComfyUI_hires_{p:05d}_.png",
                  size=96)
    out = tmp_path / "o"
    r = run(str(tmp_path / "a"), str(tmp_path / "b"), "--metrics", "pixel_std", "--out", str(out))
    assert r.exit_code == 0, r.output
    report = json.loads((out / "compare.json").read_text())
    (c,) = report["pairing"]["comparisons"]
    assert c["pairs"] == 8 and c["ambiguous_keys"] == 4 and c["rules"] == {"output_node": 8}
    assert {a["rule"] for a in c["ambiguous"]} == {"output_node"}
    for p in _csv(out / "pairs.csv"):
        assert Path(p["arm_path"]).name.split("_")[1] == Path(p["baseline_path"]).name.split("_")[1]


def test_filename_fallback_pair_by_filename_and_nothing_paired(tmp_path: Path) -> None:
    from PIL import Image

    write_arm(tmp_path / "a", prompts=PROMPTS, seeds=(1, 2))
    for arm in ("b", "c"):
        (tmp_path / arm).mkdir()
        for p in sorted((tmp_path / "a").glob("*.png")):  # re-saved without metadata (a stripper, a converter)
            Image.open(p).convert("RGB").save(tmp_path / arm / p.name)
    # a has keys (prompt + seed), b has none: nothing meets -> exit 2 with the remedy
    r = run(str(tmp_path / "a"), str(tmp_path / "b"), "--metrics", "pixel_std", "--out", str(tmp_path / "o1"))
    assert r.exit_code == 2 and "nothing could be paired" in r.output and "--pair-by filename" in r.output
    with pytest.raises(NothingPairedError):
        sdeval.compare([str(tmp_path / "a"), str(tmp_path / "b")], "pixel_std", options=RunOptions(workers=1, cache=False))
    # by file name they pair
    r = run(str(tmp_path / "a"), str(tmp_path / "b"), "--metrics", "pixel_std", "--pair-by", "filename",
            "--out", str(tmp_path / "o2"), "--json")
    assert r.exit_code == 0, r.output
    (c,) = json.loads(r.stdout)["pairing"]["comparisons"]
    assert c["pairs"] == 8 and c["rules"] == {"filename": 8} and c["clusters"] == 4  # the baseline's prompts
    # neither side has metadata: the key falls back to the relative file name
    result = sdeval.compare([str(tmp_path / "b"), str(tmp_path / "c")], "pixel_std",
                            options=RunOptions(workers=1, cache=False))
    (c,) = result.report["pairing"]["comparisons"]
    assert c["pairs"] == 8 and c["rules"] == {"filename": 8}
    assert result.metric_rows[0]["delta"] == 0.0 and result.metric_rows[0]["decision"] == "no_change"


def test_arms_by_model_splits_one_folder_and_more_than_two_arms_rank(tmp_path: Path) -> None:
    xy = tmp_path / "xy"
    write_arm(xy, prompts=PROMPTS, seeds=(1, 2, 3), model="sd15", names="sd15_{p}_{s}.png", rng_seed=1)
    write_arm(xy, prompts=PROMPTS, seeds=(1, 2, 3), model="lora_a", names="lora_a_{p}_{s}.png", rng_seed=2)
    write_arm(xy, prompts=PROMPTS, seeds=(1, 2, 3), model="lora_b", names="lora_b_{p}_{s}.png", rng_seed=3,
              degrade=True)
    write_arm(xy, prompts=PROMPTS[:1], seeds=(9,), names="nomodel_{p}_{s}.png")
    out = tmp_path / "o"
    r = run(str(xy), "--arms-by", "model", "--baseline", "sd15", "--metrics", "pixel_std,contrast",
            "--out", str(out))
    assert r.exit_code == 0, r.output
    report = json.loads((out / "compare.json").read_text())
    assert report["arms_by"] == "model" and report["baseline"] == "sd15"
    assert sorted(a["name"] for a in report["arms"]) == ["lora_a", "lora_b", "sd15"]
    assert {(m["arm"], m["metric"]) for m in report["metrics"]} == {
        (a, m) for a in ("lora_a", "lora_b") for m in ("pixel_std", "contrast")}
    for c in report["pairing"]["comparisons"]:
        assert c["pairs"] == 12 and c["clusters"] == 4
    assert report["pairing"]["unassigned"] == 1
    assert any("no value for --arms-by model" in u["reason"] for u in _csv(out / "unpaired.csv"))
    ranking = {r["metric"]: r for r in report["rankings"]}
    assert set(ranking) == {"pixel_std", "contrast"}
    assert ranking["pixel_std"]["order"][-1] == "lora_b"  # the washed-out arm is last
    assert "ranking pixel_std" in r.output
    r = run(str(xy), "--arms-by", "nosuchfield", "--metrics", "pixel_std", "--out", str(tmp_path / "o2"))
    assert r.exit_code == 2 and "no such field" in r.output


def test_named_arms_and_margin_and_policy_pass_rates(tmp_path: Path) -> None:
    write_arm(tmp_path / "one", prompts=PROMPTS, seeds=(1, 2))
    write_arm(tmp_path / "two", prompts=PROMPTS, seeds=(1, 2), rng_seed=3, degrade=True)
    policy = tmp_path / "gate.toml"
    policy.write_text('rules = ["contrast < 0.5 -> reseed"]\n')
    out = tmp_path / "o"
    r = run("--arm", "base=" + str(tmp_path / "one"), "--arm", "cand=" + str(tmp_path / "two"), "--metrics",
            "pixel_std", "--margin", "pixel_std=1000", "--policy", str(policy), "--out", str(out))
    assert r.exit_code == 0, r.output
    report = json.loads((out / "compare.json").read_text())
    rows = {m["metric"]: m for m in report["metrics"]}
    assert rows["pixel_std"]["margin"] == 1000.0 and rows["pixel_std"]["decision"] == "non_inferior"
    pr = rows["pass_rate"]
    assert pr["test"] == "mcnemar-exact" and pr["n_pairs"] == 8 and pr["mean_baseline"] > pr["mean_arm"]
    pairs = _csv(out / "pairs.csv")
    assert {p["verdict_arm"] for p in pairs} == {"reseed"}
    arm_rows = [json.loads(x) for x in (out / report["arms"][1]["results"]).read_text().splitlines()]
    assert all(row["verdict"] == "reseed" for row in arm_rows)


@pytest.mark.parametrize("toml, fragment", [
    ("[compare]\nfail_on_regresion = true\n", "unknown key 'fail_on_regresion'"),
    ("[compare]\nalpha = 2\n", "alpha must be between 0 and 1"),
    ("[compare]\nmargin = { pixel_std = -1 }\n", "margin.pixel_std"),
])
def test_config_errors_exit_2_with_the_line(tmp_path: Path, toml: str, fragment: str) -> None:
    write_arm(tmp_path / "a", prompts=PROMPTS[:2], seeds=(1,))
    write_arm(tmp_path / "b", prompts=PROMPTS[:2], seeds=(1,), rng_seed=2)
    (tmp_path / "sdeval.toml").write_text(toml)
    r = run("a", "b", "--metrics", "pixel_std", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.exit_code == 2, r.output
    assert fragment in r.output and "sdeval.toml:2" in r.output


def test_config_from_pyproject_sets_defaults(tmp_path: Path) -> None:
    write_arm(tmp_path / "a", prompts=PROMPTS, seeds=(1,))
    write_arm(tmp_path / "b", prompts=PROMPTS, seeds=(1,), rng_seed=2, degrade=True)
    (tmp_path / "pyproject.toml").write_text('[tool.sdeval.compare]\nmetrics = ["pixel_std"]\nalpha = 0.2\n'
                                             'resamples = 500\nfail_on_regression = true\n')
    r = run("a", "b", "--out", str(tmp_path / "o"), cwd=tmp_path)
    report = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert report["settings"]["alpha"] == 0.2 and report["settings"]["resamples"] == 500
    assert [m["metric"] for m in report["metrics"]] == ["pixel_std"]
    assert r.exit_code == (1 if report["verdict"]["regression"] else 0)


@pytest.mark.parametrize("args, fragment", [
    (["{a}"], "at least two arms"),
    (["{a}", "{b}", "--baseline", "zzz", "--metrics", "pixel_std"], "not an arm"),
    (["{a}", "{a}", "--metrics", "pixel_std"], "two arms are named"),
    (["{a}", "{b}", "--metrics", "fid"], "give --ref DIR or --ref-stats NAME"),
    (["{a}", "{b}", "--metrics", "lpips_diversity"], "not compared yet"),
    (["{a}", "{b}", "--metrics", "pixel_std", "--margin", "pixel_std"], "expected METRIC=X"),
    (["{a}", "{b}", "--metrics", "pixel_std", "--margin", "brightness=1"], "not compared in this run"),
    (["{a}", "{b}", "--metrics", "pixel_std", "--pair-by", "none"], "not supported"),
    (["--arm", "x", "{b}"], "expected NAME=PATH"),
])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    write_arm(tmp_path / "a", prompts=PROMPTS[:2], seeds=(1,))
    write_arm(tmp_path / "b", prompts=PROMPTS[:2], seeds=(1,), rng_seed=2)
    r = run(*[x.format(a=tmp_path / "a", b=tmp_path / "b") for x in args], "--out", str(tmp_path / "o"))
    assert r.exit_code == 2, r.output
    assert fragment in r.output


def test_callable_package_and_api_are_one_function(tmp_path: Path) -> None:
    import sdeval.compare.pairing  # noqa: F401  (binds sdeval.compare to the package)

    write_arm(tmp_path / "a", prompts=PROMPTS[:2], seeds=(1, 2))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    result = sdeval.compare([str(tmp_path / "a"), str(tmp_path / "b")], ["pixel_std"],
                            options=RunOptions(workers=1, cache=False))
    assert result.regression is False and result.metrics.loc[0, "delta"] == 0.0
    assert list(result.pairs["rule"]) == ["key"] * 4
