"""benchmarks/artifacts/build_set.py with real generator outputs: every defect reaches both halves,
real images keep their own size, and the folder is optional (CI checkouts have no ../shared).
The "real outputs" here are small images built by the test."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "artifacts"
sys.path.insert(0, str(BENCH))

import build_set  # noqa: E402


def fake_outputs(n: int, shape: tuple[int, int] = (64, 96)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for i in range(n):
        base = rng.uniform(60, 200, 3)
        img = base + rng.normal(0, 25, (*shape, 3))
        out[f"out_{i:03d}"] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def test_every_defect_reaches_both_halves():
    items = list(build_set.real_items(fake_outputs(24)))
    defects = {d.name for d in build_set.DEFECTS if d.check}
    for half in ("calibration", "heldout"):
        got = {it.defect for it in items if it.split == half and it.defect != "clean"}
        assert got == defects, (half, defects - got)
    clean = [it for it in items if it.defect == "clean"]
    assert len(clean) == 24 and all(it.source == "real" and it.size == 64 for it in clean)
    per_file = {}
    for it in items:
        if it.defect != "clean":
            per_file.setdefault(it.photo, set()).add(it.defect)
    assert all(len(v) == build_set.REAL_DEFECTS_PER_IMAGE for v in per_file.values())
    assert not any(it.defect == "jpeg_history" for it in items)


def test_real_items_render_at_their_own_size_and_deterministically():
    reals = fake_outputs(2)
    items = [it for it in build_set.real_items(reals) if it.severity in ("", "severe")]
    for it in items:
        a, b = build_set.render(it, reals), build_set.render(it, reals)
        assert a.shape == reals[it.photo].shape and np.array_equal(a, b)
        assert it.filename.startswith("real/")
    clean = next(it for it in items if it.defect == "clean")
    assert np.array_equal(build_set.render(clean, reals), reals[clean.photo])


def test_real_dir_is_optional(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SDEVAL_REAL_OUTPUTS", raising=False)
    monkeypatch.setattr(build_set, "REAL_DEFAULT", tmp_path / "absent")
    monkeypatch.setattr(build_set, "REAL_FALLBACK", tmp_path / "absent too")
    assert build_set.real_dir() is None
    folder = tmp_path / "outs"
    folder.mkdir()
    Image.fromarray(fake_outputs(1)["out_000"]).save(folder / "a.png")
    assert build_set.real_dir(folder) == folder.resolve()
    monkeypatch.setenv("SDEVAL_REAL_OUTPUTS", str(folder))
    assert build_set.real_dir() == folder.resolve()


def test_labels_carry_the_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "outs"
    folder.mkdir()
    for name, img in fake_outputs(2).items():
        Image.fromarray(img).save(folder / f"{name}.png")
    monkeypatch.setattr(build_set, "load_photos", lambda: {})  # real outputs only: fast
    n = build_set.build(tmp_path / "set", workers=1, real=folder)
    with open(tmp_path / "set" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n == 2 * (1 + 3 * build_set.REAL_DEFECTS_PER_IMAGE)
    assert {r["source"] for r in rows} == {"real"}
    assert all((tmp_path / "set" / r["path"]).is_file() for r in rows)
