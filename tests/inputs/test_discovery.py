from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdeval.core.errors import InputError
from sdeval.inputs.discovery import discover


def test_folder_recursive_sorted_and_skips(photo_dir: Path):
    (photo_dir / "sub").mkdir()
    (photo_dir / "sub" / "x.webp").write_bytes(b"")
    (photo_dir / "astronaut.txt").write_text("sidecar caption")
    found = discover([str(photo_dir)])
    names = [Path(i.path).name for i in found.items]
    assert names == sorted(names[:-1]) + ["x.webp"]
    assert found.skipped == {".md": 1}


def test_glob_and_file(photo_dir: Path):
    found = discover([str(photo_dir / "a*.png"), str(photo_dir / "black.png"), str(photo_dir / "black.png")])
    assert [Path(i.path).name for i in found.items] == ["astronaut.png", "black.png"]


def test_nothing_found(tmp_path: Path):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(InputError, match="no images found.*1 non-image"):
        discover([str(tmp_path)])
    with pytest.raises(InputError, match="no such file"):
        discover([str(tmp_path / "missing")])
    with pytest.raises(InputError, match="no files match"):
        discover([str(tmp_path / "*.png")])


def test_csv_manifest(photo_dir: Path):
    m = photo_dir / "m.csv"
    m.write_text("path,prompt,seed,width,height,group\nastronaut.png,an astronaut,42,512,512,g1\n")
    (item,) = discover([str(m)]).items
    assert item.path == str(photo_dir / "astronaut.png")
    assert item.overrides.prompt == "an astronaut" and item.overrides.seed == 42 and item.group == "g1"


def test_jsonl_manifest_and_errors(photo_dir: Path):
    m = photo_dir / "m.jsonl"
    m.write_text(json.dumps({"path": "coffee.png", "negative": "blurry", "seed": "7"}) + "\n\n")
    (item,) = discover([str(m)]).items
    assert item.overrides.negative_prompt == "blurry" and item.overrides.seed == 7
    m.write_text(json.dumps({"path": "coffee.png", "promt": "x"}) + "\n")
    with pytest.raises(InputError, match="unknown manifest column.*'promt'"):
        discover([str(m)])
    m.write_text('{"path": "coffee.png", "seed": "abc"}\n')
    with pytest.raises(InputError, match=r"m.jsonl:1: seed must be an integer"):
        discover([str(m)])
    m.write_text("{broken\n")
    with pytest.raises(InputError, match=r"m.jsonl:1: invalid JSON"):
        discover([str(m)])


def test_result_folders_inside_inputs_are_not_walked(photo_dir: Path):
    import sdeval

    out = photo_dir / "reports" / "run1"
    sdeval.gate(str(photo_dir), "offline", out_dir=out)
    (out / "attempts").mkdir()
    (out / "attempts" / "a.png").write_bytes((photo_dir / "coffee.png").read_bytes())
    names = [Path(i.path).name for i in discover([str(photo_dir)]).items]
    assert "a.png" not in names and len(names) == 5
    # naming the result folder itself still works
    assert [Path(i.path).name for i in discover([str(out)]).items] == ["a.png"]
