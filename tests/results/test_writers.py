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


def test_result_folder_under_a_file_or_read_only_is_exit_2_before_any_work(tmp_path: Path):
    import pytest

    from sdeval.core.errors import OutputError
    from sdeval.results.files import check_result_folder

    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="afile") as info:
        check_result_folder(tmp_path / "afile" / "out")
    assert info.value.exit_code == 2
    check_result_folder(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # the check leaves nothing behind


def test_gate_checks_the_out_folder_before_evaluating(tmp_path: Path, photo_dir: Path):
    from click.testing import CliRunner

    from sdeval.cli import main

    (tmp_path / "afile").write_text("x")
    r = CliRunner().invoke(main, ["gate", str(photo_dir), "--policy", "offline", "--out", str(tmp_path / "afile" / "o")])
    assert r.exit_code == 2 and "cannot write the result folder" in r.output and "evaluating" not in r.output


_FILL = """
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from sdeval.results.files import write_result_files
out = Path(sys.argv[1])
rows = [{"path": "b.png", "prompt": "second"}]
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))  # the disk is 'full' past 300 kB a file
try:  # results.jsonl and results.csv fit, summary.json (written last) does not
    write_result_files(out, rows, ["path", "prompt"], {"command": "gate", "notes": "n" * 400_000}, 1)
except Exception as exc:
    print(type(exc).__name__, exc.exit_code, exc)
    sys.exit(0)
sys.exit(1)
"""


def test_full_disk_mid_write_keeps_the_previous_complete_files(tmp_path: Path):
    import subprocess
    import sys

    from sdeval.results.files import write_result_files

    out = tmp_path / "out"
    write_result_files(out, [{"path": "a.png", "prompt": "first"}], ["path", "prompt"], {"command": "gate"}, 1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = subprocess.run([sys.executable, "-c", _FILL, str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("OutputError 2 cannot write the result folder")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp files, old files intact


def test_csv_cells_fit_a_spreadsheet_and_the_default_csv_reader(tmp_path: Path):
    from sdeval.results.files import MAX_CELL_CHARS

    write_csv(tmp_path / "r.csv", [{"prompt": "a" * 2_000_000}], ["prompt"])
    with (tmp_path / "r.csv").open(newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert len(row["prompt"]) == MAX_CELL_CHARS and row["prompt"].endswith("results.jsonl]")


def test_lists_of_records_are_one_json_cell(tmp_path: Path):
    loras = [{"name": "a.safetensors", "strength_model": 0.8, "strength_clip": None}]
    write_csv(tmp_path / "r.csv", [{"path": "a.png", "loras": loras, "empty": []}],
              ["path", "loras", "empty"])
    with (tmp_path / "r.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert json.loads(row["loras"]) == loras and row["empty"] == ""
