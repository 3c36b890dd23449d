"""Gate policy: the ordered rules and batch settings, built from TOML and CLI flags.

Keys of a policy table (``[gate]`` in sdeval.toml, ``[tool.sdeval.gate]`` in pyproject.toml,
or the top level of a ``--policy`` file / preset)::

    checks = ["blank", "resolution", "nsfw"]   # named checks / families (sdeval checks)
    min_clip = 0.2                             # min_<metric> / max_<metric> shorthands
    max_nsfw = 0.5
    rules = ["aesthetic < 5 -> reseed",        # explicit rules: METRIC OP THRESHOLD [-> ACTION]
             {metric = "nsfw", op = ">", threshold = 0.8, action = "block", on_missing = "fire"}]
    resolution = "1024x1024"                   # the requested size when metadata has none
    min_pass_rate = 0.95
    allow_errors = false
    [check.blank]                              # tune a check: thresholds per metric, and its action
    pixel_std = 3.0
    action = "reseed"
    [check.nsfw]                               # a check with two rules on one metric has a key each:
    nsfw = 0.9                                 # the block threshold
    nsfw_review = 0.6                          # the review band's lower edge (reprompt)
    [options]                                  # options for metrics (model paths, devices...)

Unknown keys are errors naming the key and the file/line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from sdeval.core.config import TomlSource
from sdeval.core.errors import MetricUnavailableError, PolicyError, UsageError
from sdeval.gates import checks as checks_mod
from sdeval.gates.rules import ACTIONS, COMPARATORS, ON_MISSING, Rule, parse_rule
from sdeval.metrics import registry

TOP_KEYS = ("checks", "rules", "min_pass_rate", "allow_errors", "resolution", "check", "options", "regenerate")
RULE_KEYS = ("metric", "op", "threshold", "action", "on_missing")
_SHORTHAND = re.compile(r"^(min|max)_(\w+)$")


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    min_pass_rate: float = 1.0
    allow_errors: bool = False
    checks: tuple[str, ...] = ()
    #: run options for metrics (``resolution`` and model options)
    options: Mapping[str, Any] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    #: the ``[regenerate]`` table: reprompt strategy, face restoration (sdeval.gates.mutations)
    regenerate: Mapping[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        """Metric names the rules need, in rule order, once each."""
        return list(dict.fromkeys(r.metric for r in self.rules))

    def as_dict(self) -> dict[str, Any]:
        return {"rules": [r.as_dict() for r in self.rules], "min_pass_rate": self.min_pass_rate,
                "allow_errors": self.allow_errors, "checks": list(self.checks),
                "options": dict(self.options), "sources": list(self.sources),
                **({"regenerate": dict(self.regenerate)} if self.regenerate else {})}


def build_policy(base: TomlSource, cli: Mapping[str, Any] | None = None) -> Policy:
    """Validate ``base`` then apply CLI overrides (same keys as the TOML table)."""
    cli_src = TomlSource(dict(cli or {}), name="command line")
    parts = [_Parsed.parse(base), _Parsed.parse(cli_src)]
    merged = parts[0].merge(parts[1])
    return merged.to_policy(sources=tuple(s for s in (base.name, "command line" if cli else "") if s))


@dataclass
class _Parsed:
    """A validated but not yet merged policy table."""

    src: TomlSource
    checks: list[str] = field(default_factory=list)
    check_tuning: dict[str, dict[str, Any]] = field(default_factory=dict)
    shorthands: dict[str, Rule] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    scalars: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    regenerate: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, src: TomlSource) -> "_Parsed":
        p = cls(src)
        for key, value in src.data.items():
            m = _SHORTHAND.match(key)
            if key == "checks":
                p.checks = p._check_names(value)
            elif key == "check":
                p.check_tuning = p._check_tables(value)
            elif key == "rules":
                p.rules = p._rules(value)
            elif key == "min_pass_rate":
                p.scalars[key] = p._number(key, value, lo=0.0, hi=1.0)
            elif key == "allow_errors":
                if not isinstance(value, bool):
                    raise src.error(f"'allow_errors' must be true or false, got {value!r}", key)
                p.scalars[key] = value
            elif key == "resolution":
                from sdeval.metrics.resolution import parse_size

                try:
                    parse_size(value)
                except UsageError as exc:
                    raise src.error(str(exc), key) from exc
                p.options["resolution"] = value
            elif key == "regenerate":
                from pathlib import Path

                from sdeval.gates.mutations import validate_regenerate_table

                base = Path(src.name).parent if Path(src.name).is_file() else None
                p.regenerate = validate_regenerate_table(value, lambda msg, k: src.error(msg, k), base)
            elif key == "options":
                if not isinstance(value, dict):
                    raise src.error("'options' must be a table", key)
                p._check_options(value)
                p.options.update(value)
            elif m and key not in TOP_KEYS:
                p.shorthands[key] = p._shorthand(key, m.group(1), m.group(2), value)
            else:
                raise src.error(_unknown_key_message(key), key)
        return p

    # -- pieces -----------------------------------------------------------------------------
    def _number(self, key: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.src.error(f"'{key}' must be a number, got {value!r}", key)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.src.error(f"'{key}' must be between {lo} and {hi}, got {value}", key)
        return float(value)

    def _check_options(self, table: Mapping[str, Any]) -> None:
        """Every key of ``[options]`` must be an option some metric or feature extractor reads
        (their declared ``option_names``) or a run option: a typo must not run silently."""
        import difflib

        if not table:
            return
        known = sorted(registry.option_names())
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=2, cutoff=0.6)
                hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise self.src.error(f"unknown option '{key}' in [options]{hint} (options metrics and features "
                                     f"read: {', '.join(known)})", key)

    def _metric(self, name: str, key: str) -> str:
        try:
            return registry.resolve(name)
        except MetricUnavailableError:
            raise
        except UsageError as exc:
            raise self.src.error(str(exc), key) from exc

    def _check_names(self, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.src.error("'checks' must be a list of check names", "checks")
        known = list(checks_mod.CHECKS) + list(checks_mod.FAMILIES)
        for name in value:
            if name not in known:
                import difflib

                close = difflib.get_close_matches(name, known, n=2)
                hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise self.src.error(f"unknown check '{name}'{hint} (known: {', '.join(known)})", "checks")
        return checks_mod.expand(value)

    def _check_tables(self, value: Any) -> dict[str, dict[str, Any]]:
        if not isinstance(value, dict):
            raise self.src.error("'check' must be a table of check tables ([check.NAME])", "check")
        out: dict[str, dict[str, Any]] = {}
        for name, table in value.items():
            check = checks_mod.CHECKS.get(name)
            if check is None:
                raise self.src.error(f"unknown check '{name}' in [check.{name}] "
                                     f"(known: {', '.join(checks_mod.CHECKS)})", name)
            if not isinstance(table, dict):
                raise self.src.error(f"[check.{name}] must be a table", name)
            metrics = set(check.tuning_keys())
            for k, v in table.items():
                if k == "action":
                    if v not in ACTIONS:
                        raise self.src.error(f"[check.{name}] action {v!r} is not one of {', '.join(ACTIONS)}", k)
                elif k in metrics:
                    self._number(k, v)
                else:
                    raise self.src.error(f"unknown key '{k}' in [check.{name}]: expected 'action' or one of "
                                         f"{', '.join(sorted(metrics))}", k)
            out[name] = dict(table)
        return out

    def _rules(self, value: Any) -> list[Rule]:
        if not isinstance(value, list):
            raise self.src.error("'rules' must be a list of rule strings or tables", "rules")
        out = []
        for item in value:
            origin = self.src.name
            if isinstance(item, str):
                try:
                    rule = parse_rule(item, origin=origin)
                except ValueError as exc:
                    raise self.src.error(str(exc), "rules") from exc
                rule = replace(rule, metric=self._metric(rule.metric, "rules"))
                if not re.search(r"->\s*\w+\s*$", item):
                    rule = replace(rule, action=registry.get_class(rule.metric).default_action)
            elif isinstance(item, dict):
                unknown = [k for k in item if k not in RULE_KEYS]
                if unknown:
                    raise self.src.error(f"unknown key '{unknown[0]}' in a rule table "
                                         f"(expected {', '.join(RULE_KEYS)})", unknown[0])
                for k in ("metric", "op", "threshold"):
                    if k not in item:
                        raise self.src.error(f"a rule table needs '{k}'", "rules")
                if item["op"] not in COMPARATORS:
                    raise self.src.error(f"rule op {item['op']!r} is not one of {', '.join(COMPARATORS)}", "op")
                metric = self._metric(str(item["metric"]), "metric")
                action = item.get("action", registry.get_class(metric).default_action)
                if action not in ACTIONS:
                    raise self.src.error(f"rule action {action!r} is not one of {', '.join(ACTIONS)}", "action")
                on_missing = item.get("on_missing", "fire")
                if on_missing not in ON_MISSING:
                    raise self.src.error(f"on_missing must be one of {', '.join(ON_MISSING)}", "on_missing")
                rule = Rule(metric=metric, op=item["op"], threshold=self._number("threshold", item["threshold"]),
                            action=action, on_missing=on_missing, origin=origin)
            else:
                raise self.src.error(f"a rule must be a string or a table, got {item!r}", "rules")
            out.append(rule)
        return out

    def _shorthand(self, key: str, kind: str, name: str, value: Any) -> Rule:
        import difflib

        try:
            metric = registry.resolve(name)
        except MetricUnavailableError:
            raise
        except UsageError as exc:
            if difflib.get_close_matches(key, TOP_KEYS, n=1, cutoff=0.8):
                raise self.src.error(_unknown_key_message(key), key) from exc
            raise self.src.error(f"policy key '{key}': {exc}", key) from exc
        threshold = self._number(key, value)
        cls = registry.get_class(metric)
        return Rule(metric=metric, op="<" if kind == "min" else ">", threshold=threshold,
                    action=cls.default_action, origin=f"{key} ({self.src.name})")

    # -- merging ----------------------------------------------------------------------------
    def merge(self, over: "_Parsed") -> "_Parsed":
        out = _Parsed(over.src)
        out.checks = self.checks + [c for c in over.checks if c not in self.checks]
        out.check_tuning = {**self.check_tuning}
        for name, table in over.check_tuning.items():
            out.check_tuning[name] = {**out.check_tuning.get(name, {}), **table}
        out.shorthands = {**self.shorthands, **over.shorthands}
        out.rules = self.rules + over.rules
        out.scalars = {**self.scalars, **over.scalars}
        out.options = {**self.options, **over.options}
        out.regenerate = {**self.regenerate, **over.regenerate}
        return out

    def to_policy(self, sources: tuple[str, ...]) -> Policy:
        rules: list[Rule] = []
        for name in self.checks:
            tuning = self.check_tuning.get(name, {})
            check = checks_mod.CHECKS[name]
            for i, r in enumerate(check.rules):
                key = check.key(i)
                r = replace(r, metric=registry.resolve(r.metric))
                if key in tuning:
                    r = replace(r, threshold=float(tuning[key]))
                if "action" in tuning:
                    r = replace(r, action=tuning["action"])
                rules.append(r)
        rules.extend(self.shorthands.values())
        rules.extend(self.rules)
        return Policy(rules=tuple(rules), min_pass_rate=self.scalars.get("min_pass_rate", 1.0),
                      allow_errors=self.scalars.get("allow_errors", False), checks=tuple(self.checks),
                      options=dict(self.options), sources=sources, regenerate=dict(self.regenerate))


def _unknown_key_message(key: str) -> str:
    import difflib

    candidates = list(TOP_KEYS) + [f"min_{n}" for n in ("clip", "aesthetic")] + ["max_nsfw"]
    close = difflib.get_close_matches(key, candidates, n=2)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return (f"unknown policy key '{key}'{hint} (expected {', '.join(TOP_KEYS)}, "
            f"or min_<metric> / max_<metric>)")
