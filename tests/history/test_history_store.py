"""The history store on SQLite and on a real PostgreSQL server: record, read, migrate, refuse, concurrency."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hist_data import summary
from sdeval.cli import main
from sdeval.history.config import HistorySettings, resolve_settings
from sdeval.history.queries import diff_runs, export_rows, list_runs, prune, show_run
from sdeval.history.service import record_result
from sdeval.history.store import SCHEMA_VERSION, HistoryVersionError, open_store
from sdeval.history.trend import trend

ROOT = Path(__file__).resolve().parents[2]


def test_record_list_show_trend_diff_export_prune(store_url: str) -> None:
    settings = HistorySettings(label="=HYPERLINK(\"x\")", tags={"ckpt": "v1"})
    for night, v in enumerate([50.0, 51.0, 49.5, 50.5, 50.2]):
        record_result(store_url, summary(v, night, fid=20.0 + night), settings=settings)
    with open_store(store_url) as store:
        runs = list_runs(store)
        assert [r["id"] for r in runs] == sorted(r["id"] for r in runs) and len(runs) == 5
        assert runs[0]["tags"] == {"ckpt": "v1"} and runs[0]["label"] == settings.label
        shown = show_run(store, "latest")
        values = {v["name"]: v for v in shown["values"]}
        assert values["pixel_std"]["value"] == 50.2 and values["pixel_std"]["watched"]
        assert values["pixel_std.p50"]["watched"] is False
        assert values["fid"]["value"] == 24.0 and values["fid"]["higher_is_better"] is False
        assert shown["protocol"]["n_class"] == "8-15"
        t = trend(store, "pixel_std").as_dict()
        assert [p["value"] for p in t["points"]] == [50.0, 51.0, 49.5, 50.5, 50.2]
        assert t["label"] == settings.label and not any(p["break"] for p in t["points"])
        assert len(trend(store, "fid", last=2).points) == 2
        d = diff_runs(store, runs[0]["id"], runs[1]["id"])
        by = {v["name"]: v for v in d["values"]}
        assert by["pixel_std"]["delta"] == pytest.approx(1.0) and by["pixel_std"]["change"] == "better"
        assert by["fid"]["change"] == "worse" and d["same_protocol"]
        rows, columns = export_rows(store)
        assert {"run", "name", "value", "label"} <= set(columns) and len(rows) > 5
        assert prune(store, keep=2)["deleted"] == 3
        assert len(list_runs(store)) == 2
        assert prune(store, before="2030-01-01")["deleted"] == 2
    # export through the CLI: the label (a formula) is guarded in the CSV
    record_result(store_url, summary(50.0, 9), settings=settings)
    r = CliRunner().invoke(main, ["history", "export", "--csv", "--history", store_url])
    assert r.exit_code == 0, r.output
    table = list(csv.DictReader(io.StringIO(r.output)))
    assert table and all(row["label"].startswith("'=") for row in table)


def _v1_database(url: str) -> None:
    """A database as the first schema version wrote it, with one run."""
    with open_store(url, target=1) as store:
        with store.write() as conn:
            assert conn.exec_driver_sql("SELECT version FROM sdeval_schema").scalar() == 1
            conn.execute(sa.text(
                "INSERT INTO runs (uid, command, label, started_at, protocol_hash, tags, n_images, exit_status) "
                "VALUES ('aaaaaaaaaaaa', 'eval', 'nightly', '2025-12-31T03:00:00.000000+00:00', :p, :tags, 8, 0)"),
                {"p": "old", "tags": json.dumps({"ckpt": "v0", "gpu": "a100"})})
            rid = conn.exec_driver_sql("SELECT id FROM runs").scalar()
            conn.execute(sa.text("INSERT INTO run_values (run_id, name, value, higher_is_better) VALUES "
                                 "(:r, 'pixel_std', 48.0, true), (:r, 'pixel_std.p10', 20.0, true)"), {"r": rid})


def test_migration_from_the_first_schema_version(store_url: str) -> None:
    _v1_database(store_url)
    with open_store(store_url) as store:  # this sdeval migrates it
        with store.read() as conn:
            assert conn.exec_driver_sql("SELECT version FROM sdeval_schema").scalar() == SCHEMA_VERSION
        old = show_run(store, "aaaaaaaaaaaa")
        assert old["tags"] == {"ckpt": "v0", "gpu": "a100"}  # copied into run_tags
        assert {v["name"]: v["watched"] for v in old["values"]} == {"pixel_std": True, "pixel_std.p10": False}
        assert list_runs(store, tag={"gpu": "a100"})[0]["uid"] == "aaaaaaaaaaaa"
    rec = record_result(store_url, summary(50.0, 0), settings=HistorySettings(label="nightly", tags={"ckpt": "v1"}))
    with open_store(store_url) as store:
        assert [r["uid"] for r in list_runs(store, label="nightly")] == ["aaaaaaaaaaaa", rec.run["uid"]]
        points = trend(store, "pixel_std", label="nightly").points
        assert [p["value"] for p in points] == [48.0, 50.0] and points[1]["break"]  # other protocol: a break


def test_a_database_from_a_newer_sdeval_is_refused(store_url: str) -> None:
    record_result(store_url, summary(50.0), settings=HistorySettings(label="n"))
    with open_store(store_url) as store, store.write() as conn:
        conn.exec_driver_sql("UPDATE sdeval_schema SET version = 99")
    with pytest.raises(HistoryVersionError, match="schema version 99.*newer sdeval.*up to 2"):
        open_store(store_url)
    r = CliRunner().invoke(main, ["history", "list", "--history", store_url])
    assert r.exit_code == 2 and "newer sdeval" in r.output and "was not changed" in r.output
    engine = sa.create_engine(store_url if "://" in store_url else f"sqlite:///{store_url}")
    with engine.connect() as conn:  # refused without a change
        assert conn.exec_driver_sql("SELECT version FROM sdeval_schema").scalar() == 99
    engine.dispose()


_WRITER = textwrap.dedent("""
    import sys, time, pathlib
    sys.path.insert(0, sys.argv[4])
    from hist_data import summary
    from sdeval.history.config import HistorySettings
    from sdeval.history.service import record_result
    url, go, who = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
    while not go.exists():
        time.sleep(0.005)
    for night in range(15):
        record_result(url, summary(50.0 + night % 3, night), settings=HistorySettings(label=who))
    print("done", who)
""")


def test_two_processes_writing_at_once_both_succeed(store_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    here = str(Path(__file__).resolve().parent)
    env_path = {"PYTHONPATH": str(ROOT)}
    import os

    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, store_url, str(go), who, here],
                              env={**os.environ, **env_path}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for who in ("job-a", "job-b")]
    go.touch()  # both start together: the first transaction creates the schema while the other waits
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, errs) in zip(procs, outs):
        assert p.returncode == 0, errs
    with open_store(store_url) as store:
        runs = list_runs(store)
    assert len(runs) == 30 and len({r["id"] for r in runs}) == 30
    assert sorted({r["label"] for r in runs}) == ["job-a", "job-b"]


def test_config_table_env_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sdeval.history]\nurl = "cfg.db"\nlabel = "cfg"\ntags = { team = "x" }\nwindow = 5\n'
        'margins = { pass_rate = 0.02 }\n', encoding="utf-8")
    s = resolve_settings(cwd=tmp_path, environ={})
    assert (s.url, s.label, dict(s.tags), s.window, dict(s.margins)) == ("cfg.db", "cfg", {"team": "x"}, 5,
                                                                        {"pass_rate": 0.02})
    s = resolve_settings(cwd=tmp_path, environ={"SDEVAL_HISTORY": "env.db"})
    assert s.url == "env.db" and s.label == "cfg"
    s = resolve_settings(url="flag.db", label="L", tags=["team=y", "ckpt=v2"], cwd=tmp_path,
                         environ={"SDEVAL_HISTORY": "env.db"})
    assert (s.url, s.label, dict(s.tags)) == ("flag.db", "L", {"team": "y", "ckpt": "v2"})
    (tmp_path / "pyproject.toml").write_text('[tool.sdeval.history]\nurl = "a.db"\nwindw = 5\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["history", "list"])
    assert r.exit_code == 2 and "pyproject.toml:3" in r.output and "windw" in r.output
    r = CliRunner().invoke(main, ["history", "list", "--history", "x.db"])
    assert r.exit_code == 2  # the config is still read (and wrong) when a flag names the store


def test_bad_locations_are_usage_errors(tmp_path: Path) -> None:
    for args, fragment in ((["--history", str(tmp_path)], "is a folder"),
                           (["--history", "mysql://u@h/db"], "not supported")):
        r = CliRunner().invoke(main, ["history", "list", *args])
        assert r.exit_code == 2 and fragment in r.output, r.output


def test_git_commit_is_read_from_the_repository_files(tmp_path: Path) -> None:
    from sdeval.history.record import git_commit

    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    git("commit", "-q", "--allow-empty", "-m", "one")
    head = git("rev-parse", "HEAD")
    assert git_commit(repo / "sub") == head
    git("pack-refs", "--all")  # the ref now only in packed-refs
    assert git_commit(repo) == head
    git("checkout", "-q", "--detach")
    assert git_commit(repo) == head
    assert git_commit(tmp_path) is None
