"""JUnit XML for CI: one test suite per run, one test case per rule (gate), per --fail-if condition
(eval) or per (arm, metric) decision (compare); ``<failure>`` with the numbers, ``<error>`` for
images that could not be read. Characters XML 1.0 cannot hold are stripped (REFERENCE.md §8)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any, Mapping, Sequence

from sdeval.reports.folder import ResultFolder
from sdeval.reports.html import fmt_num, fires

_ILLEGAL = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: paths listed in a failure's text (the rest are counted)
LIST_PATHS = 50


def xml_text(value: Any) -> str:
    """Text XML 1.0 can hold: control characters and lone surrogates removed."""
    return _ILLEGAL.sub("", str(value))


class _Suite:
    def __init__(self, name: str, timestamp: str | None, seconds: float | None) -> None:
        self.el = ET.Element("testsuite", {"name": xml_text(name)})
        if timestamp:
            self.el.set("timestamp", xml_text(timestamp))
        self.seconds = seconds
        self.n = self.failures = self.errors = 0

    def case(self, name: str, classname: str, *, failure: str | None = None, error: str | None = None,
             details: str = "", output: str = "") -> None:
        tc = ET.SubElement(self.el, "testcase", {"name": xml_text(name), "classname": xml_text(classname),
                                                 "time": "0"})
        self.n += 1
        if failure is not None:
            self.failures += 1
            f = ET.SubElement(tc, "failure", {"message": xml_text(failure), "type": "threshold"})
            f.text = xml_text(details)
        if error is not None:
            self.errors += 1
            e = ET.SubElement(tc, "error", {"message": xml_text(error), "type": "unreadable"})
            e.text = xml_text(details)
        if output:
            ET.SubElement(tc, "system-out").text = xml_text(output)

    def xml(self) -> bytes:
        self.el.set("tests", str(self.n))
        self.el.set("failures", str(self.failures))
        self.el.set("errors", str(self.errors))
        self.el.set("skipped", "0")
        self.el.set("time", f"{self.seconds or 0:.3f}")
        root = ET.Element("testsuites", {"name": "sdeval", "tests": str(self.n), "failures": str(self.failures),
                                         "errors": str(self.errors), "time": f"{self.seconds or 0:.3f}"})
        root.append(self.el)
        ET.indent(root)
        return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _paths(rows: Sequence[Mapping[str, Any]], line: Any) -> str:
    out = [line(r) for r in rows[:LIST_PATHS]]
    if len(rows) > LIST_PATHS:
        out.append(f"... and {len(rows) - LIST_PATHS} more (see results.csv)")
    return "\n".join(out)


def _error_case(suite: _Suite, rows: Sequence[Mapping[str, Any]], classname: str, tolerated: bool) -> None:
    errors = [r for r in rows if r.get("error")]
    details = _paths(errors, lambda r: f"{r.get('path')}: {r.get('error')}")
    if errors and not tolerated:
        suite.case("images are readable", classname, error=f"{len(errors)} image(s) could not be read",
                   details=details)
    else:
        suite.case("images are readable", classname,
                   output=f"{len(errors)} unreadable image(s) tolerated\n{details}" if errors else "")


def gate_junit(folder: ResultFolder) -> bytes:
    s = folder.summary
    suite = _Suite("sdeval gate", s.get("started_at"), (s.get("timing") or {}).get("seconds"))
    policy = s.get("policy") or {}
    rows = [r for r in folder.rows if not r.get("error")]
    for rule in policy.get("rules") or []:
        metric, op, t = rule.get("metric"), str(rule.get("op")), rule.get("threshold")
        name = f"{metric} {op} {fmt_num(t)} -> {rule.get('action')}"
        hit, missing = [], []
        for r in rows:
            v = r.get(metric)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(t, (int, float)):
                if fires(op, float(v), float(t)):
                    hit.append(r)
            elif v is None and rule.get("on_missing") == "fire":
                missing.append(r)
        bad = hit + missing
        cls = f"sdeval.gate.{rule.get('origin') or 'rule'}".replace(" ", "_")
        if bad:
            msg = f"{len(bad)} of {len(rows)} image(s) fired {name}"
            if missing:
                msg += f" ({len(missing)} without a value)"
            suite.case(name, cls, failure=msg,
                       details=_paths(bad, lambda r: f"{r.get('path')}: {metric} = {fmt_num(r.get(metric))} "
                                                     f"(threshold {op} {fmt_num(t)})"))
        else:
            suite.case(name, cls)
    _error_case(suite, folder.rows, "sdeval.gate", bool(policy.get("allow_errors")))
    v = s.get("verdict") or {}
    reasons = "; ".join(v.get("reasons") or [])
    rate = v.get("pass_rate")
    suite.case("batch verdict", "sdeval.gate",
               failure=None if s.get("passed") else f"gate failed: {reasons or 'see the report'}",
               details=f"pass rate {fmt_num(rate)}; counts {s.get('counts')}")
    return suite.xml()


def eval_junit(folder: ResultFolder) -> bytes:
    s = folder.summary
    suite = _Suite("sdeval eval", s.get("started_at"), (s.get("timing") or {}).get("seconds"))
    for check in s.get("fail_if") or []:
        value = check.get("value")
        msg = f"{check.get('rule')} holds (value {fmt_num(value)})" if check.get("fired") else None
        suite.case(f"not ({check.get('rule')})", "sdeval.eval.fail_if", failure=msg,
                   details=f"value {fmt_num(value)}")
    for name, entry in (s.get("set_metrics") or {}).items():
        entry = entry if isinstance(entry, dict) else {"value": entry}
        warnings = "\n".join(entry.get("warnings") or [])
        suite.case(f"{name} computed", "sdeval.eval.set_metrics",
                   error=None if entry.get("value") is not None else f"{name} has no value",
                   output=f"{name} = {fmt_num(entry.get('value'))}\n{warnings}".strip())
    _error_case(suite, folder.rows, "sdeval.eval", True)
    return suite.xml()


def compare_junit(folder: ResultFolder) -> bytes:
    c = folder.compare or {}
    s = folder.summary
    suite = _Suite("sdeval compare", s.get("started_at") or c.get("started_at"),
                   (s.get("timing") or c.get("timing") or {}).get("seconds"))
    for m in c.get("metrics") or []:
        name = f"{m.get('arm')} vs {m.get('baseline')}: {m.get('metric')}"
        numbers = (f"delta {fmt_num(m.get('delta'))} [{fmt_num(m.get('ci_low'))}, {fmt_num(m.get('ci_high'))}], "
                   f"p_adj {fmt_num(m.get('p_adjusted'))}, {m.get('test')}, n_pairs {m.get('n_pairs')}")
        decision = m.get("decision")
        suite.case(name, f"sdeval.compare.{m.get('metric')}",
                   failure=f"regressed: {numbers}" if decision == "regressed" else None,
                   details="; ".join(m.get("warnings") or []),
                   output=f"{decision}: {numbers}")
    verdict = c.get("verdict") or {}
    if verdict:
        suite.case("no regression", "sdeval.compare",
                   failure=("regression: " + "; ".join(verdict.get("reasons") or [])) if verdict.get("regression")
                   else None)
    return suite.xml()


def junit_xml(folder: ResultFolder) -> bytes:
    return {"gate": gate_junit, "eval": eval_junit, "compare": compare_junit}[folder.kind](folder)
