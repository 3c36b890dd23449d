"""A rule: ``metric comparator threshold -> action``, and how one is evaluated on a value."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from sdeval.results.schema import SEVERITY

#: actions, strongest first (DESIGN.md, gate policy); ``error`` is a verdict, not an action
ACTIONS: tuple[str, ...] = tuple(sorted((v for v in SEVERITY if v != "error"), key=SEVERITY.__getitem__,
                                        reverse=True))
ACTION_STRENGTH = SEVERITY
COMPARATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
               "==": operator.eq, "!=": operator.ne}
#: what a rule does when its metric has no value for an image
ON_MISSING = ("fire", "ignore")

_RULE_RE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][\w.]*)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<threshold>[-+0-9.eE]+|inf|-inf)\s*"
    r"(?:->\s*(?P<action>\w+))?\s*$")


@dataclass(frozen=True)
class Rule:
    """Fires (applies ``action``) when ``value <op> threshold`` holds: it states the failure."""

    metric: str
    op: str
    threshold: float
    action: str = "reseed"
    on_missing: str = "fire"
    #: where the rule came from (``check blank``, ``min_clip``, ``gates.toml:12``)
    origin: str = ""
    #: a short human explanation, shown in reasons
    why: str = ""

    def fires(self, value: float) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return bool(COMPARATORS[self.op](value, self.threshold))

    def describe(self) -> str:
        return f"{self.metric} {self.op} {_fmt(self.threshold)} -> {self.action}"

    def reason(self, value: float) -> str:
        text = f"{self.metric} {_fmt(value)} {self.op} {_fmt(self.threshold)}"
        return f"{text} ({self.why})" if self.why else text

    def as_dict(self) -> dict:
        return {"metric": self.metric, "op": self.op, "threshold": self.threshold,
                "action": self.action, "on_missing": self.on_missing, "origin": self.origin}


def parse_rule(text: str, *, default_action: str | None = None, origin: str = "") -> Rule:
    """Parse ``"clip_score < 0.2 -> reprompt"``. Raises ValueError with a readable message."""
    m = _RULE_RE.match(text)
    if not m:
        raise ValueError(
            f"cannot parse rule {text!r}: expected 'METRIC OP THRESHOLD [-> ACTION]', "
            f"OP one of {', '.join(COMPARATORS)}")
    action = m.group("action") or default_action or "reseed"
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r} in rule {text!r}: expected one of {', '.join(ACTIONS)}")
    return Rule(metric=m.group("metric"), op=m.group("op"), threshold=float(m.group("threshold")),
                action=action, origin=origin)


def _fmt(x: float) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e9:
        return str(int(x))
    return f"{x:.4g}" if isinstance(x, float) else str(x)
