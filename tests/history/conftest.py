"""History test fixtures: a store per test on SQLite and on a real PostgreSQL server.

The PostgreSQL server is started once per session (``pg_server.py``). When it cannot start, the
PostgreSQL tests are skipped on a developer's machine and FAIL under ``CI=true`` (``.ci/run`` installs
the server), so a CI run can never pass without having tested PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg_server import PgServer, ServerUnavailable, start_server  # noqa: E402

_counter = itertools.count()


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


@pytest.fixture(scope="session")
def pg_server():
    import psycopg  # noqa: F401  - in the test extra: a broken install fails, never skips

    try:
        server = start_server()
    except ServerUnavailable as exc:
        if _in_ci():
            pytest.fail(f"PostgreSQL server could not start (CI=true: these tests must run): {exc}")
        pytest.skip(f"PostgreSQL server not available: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty database on the session's server."""
    return pg_server.create_database(f"t{os.getpid()}_{next(_counter)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on an embedded SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "evals.db")
    return request.getfixturevalue("pg_url")
