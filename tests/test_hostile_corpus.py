"""The hostile corpus gated end to end: every file a row, every bad one an error with its reason,
the run finishes with the gate's own exit code and a result folder that parses back (issue 10)."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

from click.testing import CliRunner

from hostile_corpus import build
from sdeval.cli import main


def test_the_corpus_gates_end_to_end(tmp_path: Path):
    root = tmp_path / "corpus"
    root.mkdir()
    cases = build(root)
    out = tmp_path / "out"
    box: dict = {}

    def run() -> None:
        box["r"] = CliRunner().invoke(main, ["gate", str(root), "--policy", "offline", "--check", "artifacts",
                                             "--workers", "2", "--no-cache", "--out", str(out)])

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(300)
    assert not t.is_alive(), "the run hung"
    r = box["r"]
    assert r.exit_code == 1, (r.exit_code, r.output[-2000:], r.exception)
    rows = {str(Path(j["path"]).relative_to(root)): j
            for j in map(json.loads, (out / "results.jsonl").read_text(encoding="utf-8").splitlines())}
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    for case in cases:
        assert case.name in rows, case.name
        row = rows[case.name]
        if case.expect == "error":
            assert row["verdict"] == "error" and case.reason in (row["error"] or ""), (case, row["error"])
        else:
            assert row["error"] is None, (case, row["error"])
    assert "Traceback" not in r.output
