from __future__ import annotations

from sdeval.gates.engine import judge_batch, judge_image
from sdeval.gates.policy import Policy
from sdeval.gates.rules import Rule

POLICY = Policy(rules=(
    Rule("pixel_std", "<", 2.0, "reseed"),
    Rule("nsfw", ">", 0.5, "block"),
    Rule("clip_score", "<", 0.2, "reprompt"),
    Rule("size_error", ">", 0, "block", on_missing="ignore"),
))


def row(**kw):
    base = {"pixel_std": 30.0, "nsfw": 0.01, "clip_score": 0.3, "size_error": 0.0, "missing": {}, "error": None}
    base.update(kw)
    return base


def test_pass():
    v = judge_image(row(), POLICY)
    assert v.verdict == "pass" and v.reasons == ()


def test_strongest_action_wins_and_every_reason_kept():
    v = judge_image(row(pixel_std=0.0, nsfw=0.9, clip_score=0.1), POLICY)
    assert v.verdict == "block"
    assert len(v.reasons) == 3
    assert v.reasons[0].startswith("pixel_std 0 < 2") and v.reasons[0].endswith("-> reseed")


def test_reprompt_beats_reseed():
    assert judge_image(row(pixel_std=0.0, clip_score=0.1), POLICY).verdict == "reprompt"


def test_missing_value_fires_unless_ignored():
    v = judge_image(row(clip_score=None, missing={"clip_score": "no prompt"}), POLICY)
    assert v.verdict == "reprompt" and "clip_score missing: no prompt" in v.reasons[0]
    v = judge_image(row(size_error=None, missing={"size_error": "no requested size"}), POLICY)
    assert v.verdict == "pass" and v.notes == ("size_error not checked: no requested size",)


def test_error_row():
    v = judge_image(row(error="truncated file"), POLICY)
    assert v.verdict == "error" and v.reasons == ("error: truncated file",)


def test_batch_rules():
    p = POLICY
    assert judge_batch(["pass", "pass"], p).passed
    b = judge_batch(["pass", "block"], p)
    assert not b.passed and "1 image(s) blocked" in b.reasons
    assert not judge_batch(["pass", "reseed"], p).passed  # min_pass_rate 1.0 by default
    lenient = Policy(rules=p.rules, min_pass_rate=0.5)
    assert judge_batch(["pass", "reseed"], lenient).passed
    assert not judge_batch(["pass", "error"], lenient).passed
    tolerant = Policy(rules=p.rules, min_pass_rate=1.0, allow_errors=True)
    b = judge_batch(["pass", "error"], tolerant)
    assert b.passed and b.pass_rate == 1.0
    assert not judge_batch(["error"], tolerant).passed
    assert judge_batch(["pass", "reseed", "error"], lenient).counts["error"] == 1
