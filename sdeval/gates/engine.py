"""Apply a policy: a verdict per image (strongest action fired, every reason kept), then the batch.

Image verdicts: ``pass``, ``reseed``, ``reprompt``, ``restore_face``, ``block`` (DESIGN.md order)
and ``error`` for an image that could not be evaluated.

Batch verdict: fail when any image is blocked, any image is an error (unless ``allow_errors``),
or the pass rate is under ``min_pass_rate`` (default 1.0: every image that is not passing —
waiting for a regeneration that has not happened — fails the batch). Errors are excluded from
the pass-rate denominator only with ``allow_errors``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from sdeval.gates.policy import Policy
from sdeval.gates.rules import ACTION_STRENGTH
from sdeval.results.schema import VERDICTS

__all__ = ["VERDICTS", "UNRESOLVED", "ImageVerdict", "BatchVerdict", "judge_image", "judge_batch"]
#: verdicts that mean "an action is still owed" (regeneration not done or failed)
UNRESOLVED = ("reseed", "reprompt", "restore_face")


@dataclass(frozen=True)
class ImageVerdict:
    verdict: str
    reasons: tuple[str, ...] = ()
    #: rules that only recorded a note (metric missing with on_missing="ignore")
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchVerdict:
    passed: bool
    counts: Mapping[str, int]
    pass_rate: float
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "counts": dict(self.counts), "pass_rate": self.pass_rate,
                "reasons": list(self.reasons)}


def judge_image(row: Mapping[str, Any], policy: Policy) -> ImageVerdict:
    if row.get("error"):
        return ImageVerdict("error", (f"error: {row['error']}",))
    verdict, reasons, notes = "pass", [], []
    missing = row.get("missing") or {}
    for rule in policy.rules:
        value = row.get(rule.metric)
        if value is None:
            why = missing.get(rule.metric, "no value")
            if rule.on_missing == "ignore":
                notes.append(f"{rule.metric} not checked: {why}")
                continue
            reasons.append(f"{rule.metric} missing: {why} -> {rule.action}")
        elif rule.fires(value):
            reasons.append(f"{rule.reason(value)} -> {rule.action}")
        else:
            continue
        if ACTION_STRENGTH[rule.action] > ACTION_STRENGTH[verdict]:
            verdict = rule.action
    return ImageVerdict(verdict, tuple(reasons), tuple(notes))


def judge_batch(verdicts: Iterable[str], policy: Policy) -> BatchVerdict:
    counts = Counter(verdicts)
    total = sum(counts.values())
    errors = counts.get("error", 0)
    denominator = total - errors if policy.allow_errors else total
    pass_rate = counts.get("pass", 0) / denominator if denominator else 0.0
    reasons = []
    if counts.get("block"):
        reasons.append(f"{counts['block']} image(s) blocked")
    if errors and not policy.allow_errors:
        reasons.append(f"{errors} image(s) could not be evaluated (use --allow-errors to tolerate)")
    if denominator == 0:
        reasons.append("no image could be evaluated")
    elif pass_rate < policy.min_pass_rate:
        reasons.append(f"pass rate {pass_rate:.1%} is under the minimum {policy.min_pass_rate:.1%}")
    ordered = {v: counts.get(v, 0) for v in VERDICTS}
    return BatchVerdict(passed=not reasons, counts=ordered, pass_rate=pass_rate, reasons=tuple(reasons))
