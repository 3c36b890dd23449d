from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from sdeval.core.io import safe_text, write_json, write_jsonl
from sdeval.results.files import guard_cell, write_csv


def test_formula_guard():
    for bad in ("=HYPERLINK(\"x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert guard_cell(bad).startswith("'")
    assert guard_cell("a prompt") == "a prompt"
    assert guard_cell(3.5) == 3.5


def test_csv_roundtrip_and_guard(tmp_path: Path):
    rows = [{"path": "a.png", "prompt": "=cmd|' /C calc'!A0", "clip": 0.25, "reasons": ["x", "y"], "none": None}]
    write_csv(tmp_path / "r.csv", rows, ["path", "prompt", "clip", "reasons", "none"])
    with (tmp_path / "r.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["prompt"].startswith("'=") and row["clip"] == "0.25" and row["reasons"] == "x | y"
    assert row["none"] == ""


def test_json_nan_and_undecodable_names(tmp_path: Path):
    name = os.fsdecode(b"caf\xe9.png")
    write_jsonl(tmp_path / "r.jsonl", [{"path": name, "v": float("nan")}])
    rec = json.loads((tmp_path / "r.jsonl").read_text(encoding="utf-8"))
    assert rec == {"path": "caf\\xe9.png", "v": None}
    assert safe_text("plain") == "plain"


def test_atomic_leaves_no_temp_files(tmp_path: Path):
    write_json(tmp_path / "s.json", {"a": 1})
    write_json(tmp_path / "s.json", {"a": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": 2}
