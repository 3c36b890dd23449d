"""Every error class carries its exit code; nothing changes an instance's meaning."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import sdeval
from sdeval.core.errors import EXIT_INTERNAL, EXIT_USAGE, SdevalError

ROOT = Path(sdeval.__file__).parent


def _all_error_classes() -> set[type]:
    for mod in pkgutil.walk_packages([str(ROOT)], "sdeval."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    out, todo = set(), [SdevalError]
    while todo:
        cls = todo.pop()
        out.add(cls)
        todo.extend(cls.__subclasses__())
    return out


def test_exit_codes_are_class_facts():
    classes = _all_error_classes()
    assert len(classes) > 10
    for cls in classes:
        assert cls.exit_code in (1, 2, 3), cls
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in ROOT.rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"\bself\.exit_code\s*=", line)]
    assert offenders == []


def test_a_remote_ranks_failure_keeps_its_code():
    from sdeval.evaluate.set_eval import remote_error

    assert remote_error({"message": "x", "exit_code": EXIT_INTERNAL}).exit_code == EXIT_INTERNAL
    assert remote_error({"message": "x", "exit_code": EXIT_USAGE}).exit_code == EXIT_USAGE
