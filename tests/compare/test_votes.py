"""Human preference statistics: Wilson interval and sign test against scipy, Bradley–Terry against its
closed form and a planted ranking, and the votes CSVs read back into compare.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from sdeval.compare import votes as V
from sdeval.core.errors import InputError


@pytest.mark.parametrize("k, n", [(8, 10), (0, 5), (5, 5), (37, 80)])
def test_wilson_and_sign_test_match_scipy(k: int, n: int):
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = V.wilson(k, n)
    assert lo == pytest.approx(ref.low, abs=1e-9) and hi == pytest.approx(ref.high, abs=1e-9)
    assert V.sign_test(k, n - k) == pytest.approx(binomtest(k, n, 0.5).pvalue)
    assert V.wilson(0, 0) == (None, None) and V.sign_test(0, 0) is None


def test_bradley_terry_two_arms_is_the_smoothed_log_odds():
    outcomes = [{"a": "x", "b": "y", "tie": False}] * 7 + [{"a": "y", "b": "x", "tie": False}] * 3
    s = V.bradley_terry(outcomes, ["x", "y"])
    assert s["x"] - s["y"] == pytest.approx(math.log(7.5 / 3.5), abs=1e-6)
    assert s["x"] + s["y"] == pytest.approx(0, abs=1e-9)


def test_bradley_terry_recovers_a_planted_order_with_intervals():
    rng = np.random.default_rng(0)
    true = {"a": 1.0, "b": 0.0, "c": -1.0}
    arms = list(true)
    outcomes = []
    for i in range(600):
        x, y = rng.choice(arms, 2, replace=False)
        p = 1 / (1 + math.exp(true[y] - true[x]))
        win = rng.random() < p
        outcomes.append({"a": x if win else y, "b": y if win else x, "tie": False, "cluster": i // 3})
    rows = V.bt_with_intervals(outcomes, arms, resamples=200)
    assert [r["arm"] for r in rows] == ["a", "b", "c"]
    for r in rows:
        assert r["low"] <= r["strength"] <= r["high"]
        assert r["low"] - 0.3 < true[r["arm"]] < r["high"] + 0.3


def test_votes_from_several_raters_into_compare_json(tmp_path: Path):
    (tmp_path / "human").mkdir()
    pairs = [{"id": f"p{i}", "left": "cand" if i % 2 else "base", "right": "base" if i % 2 else "cand",
              "cluster": f"prompt {i // 2}"} for i in range(10)]
    (tmp_path / "human" / "pairs.json").write_text(json.dumps({"pairs": pairs}))
    (tmp_path / "compare.json").write_text(json.dumps({"baseline": "base", "arms": [{"name": "base"}, {"name": "cand"}]}))
    # rater ann prefers cand every time (the side it is on), bob ties twice and once names an unknown pair
    ann = "rater,pair_id,choice\r\n" + "".join(f"ann,p{i},{1 if i % 2 else 2}\r\n" for i in range(10))
    bob = "pair_id,choice\r\np0,0\r\np1,0\r\np2,1\r\nzz,1\r\n"
    (tmp_path / "ann.csv").write_text(ann)
    (tmp_path / "bob.csv").write_text(bob)
    human = V.add_votes(tmp_path, [tmp_path / "ann.csv", tmp_path / "bob.csv"])
    assert human["raters"] == ["ann", "bob"] and human["votes"] == 13 and human["ties"] == 2
    row, = human["pairs"]
    assert (row["arm"], row["other"]) == ("cand", "base")
    assert (row["wins"], row["losses"], row["ties"]) == (10, 1, 2)
    assert row["win_rate"] == pytest.approx(11 / 13)
    assert row["p_sign"] == pytest.approx(binomtest(10, 11, 0.5).pvalue)
    assert any("zz" in p for p in human["problems"])
    assert "bradley_terry" not in human  # two arms: the pair table is the answer
    assert json.loads((tmp_path / "compare.json").read_text())["human"]["votes"] == 13
    (tmp_path / "bad.csv").write_text("pair_id,choice\r\np0,left\r\n")
    with pytest.raises(InputError, match="choice must be"):
        V.add_votes(tmp_path, [tmp_path / "bad.csv"])
