"""Paths the tests share, in a plain module: ``from conftest import ...`` breaks as soon as a test
folder has its own conftest.py (pytest then holds several modules named ``conftest``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
#: ``../shared`` beside the checkout: recordings of a real ComfyUI, calibration sets (CI has it)
SHARED = ROOT.parent / "shared"


def shared_file(*parts: str) -> Path:
    """A file under ``../shared``. Missing: the test is skipped on a developer's machine, but
    fails under ``CI=true``, where ``../shared`` is always there (a skip would hide a lost file)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI", "").strip().lower() in ("true", "1"):
            pytest.fail(f"{path} is missing (CI=true, and CI has ../shared)")
        pytest.skip(f"{path} not present")
    return path
