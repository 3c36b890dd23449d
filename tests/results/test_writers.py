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


HOSTILE = ["\r=1+1", "=1+1", " =cmd|' /C calc'!A0", "\n@SUM(A1)", "\t-2+3", "+1", "a\rb", "x\n=y", "ok"]


def test_csv_hostile_cells_parse_back_one_row_per_record_and_are_guarded(tmp_path: Path):
    import pandas as pd

    cols = ["path", "prompt", "sampler", "score", "n", "reasons"]
    rows = [{"path": f"{i}.png", "prompt": h, "sampler": h, "score": -0.5 - i, "n": -i, "reasons": [h]}
            for i, h in enumerate(HOSTILE)]
    write_csv(tmp_path / "r.csv", rows, cols)
    with (tmp_path / "r.csv").open(newline="", encoding="utf-8") as fh:
        parsed = list(csv.DictReader(fh))
    assert len(parsed) == len(rows)
    frame = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert len(frame) == len(rows)
    assert frame["score"].dtype.kind == "f" and frame["n"].dtype.kind == "i"  # numbers are not guarded
    for rec, row in zip(parsed, rows):
        for col in ("prompt", "sampler", "reasons"):
            cell = rec[col]
            stripped = cell.lstrip()
            assert not (cell.startswith(("=", "+", "-", "@", "\t", "\r")) or stripped.startswith(("=", "+", "-", "@"))), cell
            assert cell.lstrip("'") == row["prompt"]
        assert float(rec["score"]) == row["score"]


def test_lone_surrogates_from_metadata_are_written_escaped(tmp_path: Path):
    assert safe_text("a\ud800b") == "a\\ud800b"
    write_jsonl(tmp_path / "r.jsonl", [{"prompt": "a\ud800b"}])
    write_csv(tmp_path / "r.csv", [{"prompt": "=\ud800"}], ["prompt"])
    assert json.loads((tmp_path / "r.jsonl").read_text(encoding="utf-8")) == {"prompt": "a\\ud800b"}
    assert "'=\\ud800" in (tmp_path / "r.csv").read_text(encoding="utf-8")


def test_written_files_follow_the_umask(tmp_path: Path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        os.umask(0o077)
        write_json(tmp_path / "b.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
