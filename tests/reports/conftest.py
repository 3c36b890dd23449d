"""Result folders made once per test session (real gate / eval / compare runs on small images)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_fixtures import compare_folder, eval_folder, gate_folder  # noqa: E402


@pytest.fixture(scope="session")
def gate_dir(tmp_path_factory) -> Path:
    return gate_folder(tmp_path_factory.mktemp("gate_run"))


@pytest.fixture(scope="session")
def eval_dir(tmp_path_factory) -> Path:
    return eval_folder(tmp_path_factory.mktemp("eval_run"))


@pytest.fixture(scope="session")
def compare_dir(tmp_path_factory) -> Path:
    return compare_folder(tmp_path_factory.mktemp("compare_run"))
