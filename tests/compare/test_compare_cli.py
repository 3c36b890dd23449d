"""``sdeval compare base/ cand/ --metrics clip_score,aesthetic,fid,kid --ref real/ --fail-on-regression``
end to end with tiny models: a planted regression is found (exit 1), an A/A pair is not (exit 0)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import torch  # noqa: F401
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
from compare_fixtures import tiny_models, write_arm  # noqa: E402
from eval_models import restore_offline  # noqa: E402,F401

from sdeval.cli import main  # noqa: E402

METRICS = "clip_score,aesthetic,fid,kid"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("comparecli")
    flags = tiny_models(root / "w")
    write_arm(root / "base", rng_seed=1)
    write_arm(root / "same", rng_seed=2)          # A/A: the same process, other draws
    write_arm(root / "worse", rng_seed=1, degrade=True)
    write_arm(root / "real", rng_seed=3, seeds=(7, 8))
    return {"root": root, "flags": flags}


def run(data: dict[str, Any], *args: str) -> Any:
    return CliRunner().invoke(main, ["compare", *args, *data["flags"]], catch_exceptions=False)


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_planted_regression_is_found(data: dict[str, Any], tmp_path: Path) -> None:
    root = data["root"]
    out = tmp_path / "worse"
    r = run(data, str(root / "base"), str(root / "worse"), "--metrics", METRICS, "--ref", str(root / "real"),
            "--fail-on-regression", "--out", str(out), "--resamples", "2000")
    assert r.exit_code == 1, r.output
    assert "REGRESSION" in r.output
    report = json.loads((out / "compare.json").read_text())
    assert report["baseline"] == "base" and [a["name"] for a in report["arms"]] == ["base", "worse"]
    assert report["verdict"]["regression"] is True and report["verdict"]["failed"] is True
    rows = {m["metric"]: m for m in report["metrics"]}
    assert set(rows) == {"clip_score", "aesthetic", "fid", "kid"}
    for name in ("fid", "kid"):
        m = rows[name]
        assert m["decision"] == "regressed", m
        assert m["n_pairs"] == 20 and m["n_clusters"] == 10 and m["test"] == "permutation"
        assert m["mean_arm"] > m["mean_baseline"] and m["delta"] < 0 and m["ci_high"] < 0
        assert m["p_adjusted"] >= m["p"] and m["higher_is_better"] is False
    assert any("fid" in reason for reason in report["verdict"]["reasons"])
    cs = rows["clip_score"]
    assert cs["n_pairs"] == 20 and cs["n_clusters"] == 10 and cs["test"] == "wilcoxon"
    assert cs["resamples"] == 2000 and cs["mde"] > 0
    # Holm over the four tests of the run
    ps = sorted(m["p"] for m in report["metrics"])
    assert min(m["p_adjusted"] for m in report["metrics"]) == pytest.approx(min(1.0, 4 * ps[0]))
    c = report["pairing"]["comparisons"][0]
    assert (c["pairs"], c["clusters"], c["unpaired_arm"], c["unpaired_baseline"]) == (20, 10, 0, 0)
    assert c["rules"] == {"key": 20}
    assert report["reference"]["kind"] == "dir" and report["reference"]["images"] == 20

    metrics_csv = _csv(out / "metrics.csv")
    assert [(m["metric"], m["decision"]) for m in metrics_csv] == [(m["metric"], m["decision"])
                                                                    for m in report["metrics"]]
    pairs = _csv(out / "pairs.csv")
    assert len(pairs) == 20
    p0 = pairs[0]
    assert p0["rule"] == "key" and p0["seed"] == "1" and p0["prompt"].startswith("a photo of subject 0")
    assert float(p0["clip_score_diff"]) == pytest.approx(float(p0["clip_score_arm"]) - float(p0["clip_score_baseline"]))
    assert (out / p0["arm_href"]).resolve() == Path(p0["arm_path"]).resolve()
    for arm in report["arms"]:
        rows_jsonl = [json.loads(line) for line in (out / arm["results"]).read_text().splitlines()]
        assert len(rows_jsonl) == 20 and all(row["clip_score"] is not None for row in rows_jsonl)
        assert {"path", "prompt", "seed", "aesthetic", "error"} <= set(rows_jsonl[0])
    assert _csv(out / "unpaired.csv") == []


def test_aa_comparison_is_not_flagged_and_json_is_clean(data: dict[str, Any], tmp_path: Path) -> None:
    root = data["root"]
    r = run(data, str(root / "base"), str(root / "same"), "--metrics", METRICS, "--ref", str(root / "real"),
            "--fail-on-regression", "--out", str(tmp_path / "aa"), "--json", "--resamples", "2000")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)  # --json: stdout is compare.json only
    assert report["verdict"]["regression"] is False
    assert all(m["decision"] in ("no_change", "improved") for m in report["metrics"]), \
        [(m["metric"], m["decision"], m["p_adjusted"]) for m in report["metrics"]]
    assert report["settings"]["resamples"] == 2000 and report["settings"]["multiplicity"] == "holm"
    assert report["features"]["clip_image"]["computed"] + report["features"]["clip_image"]["cache_hits"] == 40


def test_warm_compare_computes_only_the_new_arm(data: dict[str, Any], tmp_path: Path) -> None:
    root = data["root"]
    cache = ["--no-cache"]
    del cache
    r = run(data, str(root / "base"), str(root / "worse"), "--metrics", "clip_score,fid", "--ref", str(root / "real"),
            "--out", str(tmp_path / "one"))
    assert r.exit_code == 0, r.output  # a regression without --fail-on-regression: exit 0
    write_arm(root / "new", rng_seed=9)
    r = run(data, str(root / "base"), str(root / "new"), "--metrics", "clip_score,fid", "--ref", str(root / "real"),
            "--out", str(tmp_path / "two"))
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "two" / "compare.json").read_text())
    assert report["features"]["inception"] == {"cache_hits": 20, "computed": 20}  # base cached, new computed
    assert report["reference_features"]["inception"] == {"cache_hits": 20, "computed": 0}


def test_compare_writes_its_report_and_form_takes_votes_and_is_recorded(data: dict[str, Any], tmp_path: Path) -> None:
    """The end of a compare run: report.html / junit.xml / summary.md, the blind form with --human-form,
    the run recorded in the history with its deltas; then ``compare --votes CSV RESULT_DIR``."""
    root = data["root"]
    out, db = tmp_path / "cmp", tmp_path / "h.db"
    r = run(data, str(root / "base"), str(root / "worse"), "--metrics", "clip_score", "--out", str(out),
            "--resamples", "500", "--human-form", "--history", str(db), "--label", "ckpt")
    assert r.exit_code == 0, r.output
    for name in ("report.html", "junit.xml", "summary.md", "human/index.html", "human/pairs.json"):
        assert (out / name).is_file(), name
    assert "regressed" in (out / "report.html").read_text(encoding="utf-8") or \
        "no_change" in (out / "report.html").read_text(encoding="utf-8")
    listed = CliRunner().invoke(main, ["history", "list", "--history", str(db), "--json"])
    assert listed.exit_code == 0, listed.output
    runs = json.loads(listed.stdout)["runs"]
    assert len(runs) == 1 and runs[0]["command"] == "compare" and runs[0]["label"] == "ckpt"
    shown = CliRunner().invoke(main, ["history", "show", str(runs[0]["id"]), "--history", str(db), "--json"])
    assert "delta.worse.clip_score" in shown.stdout, shown.stdout[:2000]

    pairs = json.loads((out / "human" / "pairs.json").read_text())["pairs"]
    votes = tmp_path / "votes.csv"
    # the rater prefers the baseline every time, whichever side it was drawn on
    votes.write_text("rater,pair_id,choice\r\n" + "".join(
        f"ann,{p['id']},{1 if p['left'] == 'base' else 2}\r\n" for p in pairs))
    r = CliRunner().invoke(main, ["compare", str(out), "--votes", str(votes)])
    assert r.exit_code == 0, r.output
    human = json.loads((out / "compare.json").read_text())["human"]
    assert human["votes"] == len(pairs) and human["pairs"][0]["wins"] == 0
    assert CliRunner().invoke(main, ["compare", str(root / "base"), "--votes", str(votes)]).exit_code == 2
