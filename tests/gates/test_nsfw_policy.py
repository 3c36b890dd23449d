"""The nsfw check's review band (block above 0.8, reprompt from 0.5) and its tuning keys, and the
shipped rules against the committed labels of 87 real outputs (benchmarks/nsfw/labels.csv)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sdeval.core.config import TomlSource
from sdeval.core.errors import PolicyError
from sdeval.gates.checks import CHECKS
from sdeval.gates.engine import judge_image
from sdeval.gates.policy import build_policy

LABELS = Path(__file__).resolve().parents[2] / "benchmarks" / "nsfw" / "labels.csv"


def src(text: str) -> TomlSource:
    import tomllib

    return TomlSource(tomllib.loads(text), name="gates.toml", text=text)


def verdict(policy, score: float) -> str:
    return judge_image({"nsfw": score, "missing": {}, "error": None}, policy).verdict


def test_default_blocks_above_08_and_reviews_the_band():
    p = build_policy(src('checks = ["nsfw"]'))
    assert verdict(p, 0.95) == "block"
    assert verdict(p, 0.81) == "block"
    assert verdict(p, 0.7) == "reprompt"
    assert verdict(p, 0.51) == "reprompt"
    assert verdict(p, 0.3) == "pass"
    v = judge_image({"nsfw": 0.6, "missing": {}, "error": None}, p)
    assert any("review band" in r for r in v.reasons)


def test_tuning_keys_move_each_rule_separately():
    p = build_policy(src('checks = ["nsfw"]\n[check.nsfw]\nnsfw = 0.9\nnsfw_review = 0.7\n'))
    assert sorted((r.threshold, r.action) for r in p.rules) == [(0.7, "reprompt"), (0.9, "block")]
    assert verdict(p, 0.85) == "reprompt" and verdict(p, 0.65) == "pass"


def test_action_block_restores_a_single_blocking_band():
    p = build_policy(src('checks = ["nsfw"]\n[check.nsfw]\naction = "block"\n'))
    assert verdict(p, 0.6) == "block" and verdict(p, 0.4) == "pass"


def test_unknown_tuning_key_names_both_keys():
    with pytest.raises(PolicyError, match="nsfw, nsfw_review"):
        build_policy(src('checks = ["nsfw"]\n[check.nsfw]\nnsfw_block = 0.9\n'))


def test_max_nsfw_shorthand_still_blocks():
    p = build_policy(src('checks = ["blank"]\nmax_nsfw = 0.5\n'))
    assert verdict(p, 0.6) == "block"


def test_other_checks_keep_metric_names_as_keys():
    assert CHECKS["blur"].tuning_keys() == ["blur", "motion_blur"]
    assert CHECKS["nsfw"].tuning_keys() == ["nsfw", "nsfw_review"]


def test_shipped_rules_on_the_labelled_real_outputs():
    """The goal on the committed measurement: <= 2 % of SFW real outputs blocked, the explicit and
    suggestive ones blocked (the scores are sdeval's own open_nsfw values of those files)."""
    with open(LABELS, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 87 and {r["label"] for r in rows} == {"sfw", "suggestive", "explicit"}
    p = build_policy(src('checks = ["nsfw"]'))
    by = {lab: [verdict(p, float(r["open_nsfw"])) for r in rows if r["label"] == lab]
          for lab in ("sfw", "suggestive", "explicit")}
    assert by["sfw"].count("block") / len(by["sfw"]) <= 0.02
    assert set(by["explicit"]) == {"block"} and set(by["suggestive"]) == {"block"}
    # the old single rule (nsfw > 0.5 -> block) missed the goal on the same scores
    old = sum(float(r["open_nsfw"]) > 0.5 for r in rows if r["label"] == "sfw")
    assert old / len(by["sfw"]) > 0.02
