"""Extreme aspect ratios: the artifact analysis never asks OpenCV for a giant image (issue 10)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdeval import api
from sdeval.features import artifacts as A


@pytest.mark.parametrize("shape", [(1, 16385), (16385, 1), (4, 4096)])
def test_strips_are_an_error_not_a_giant_resize(shape):
    with pytest.raises(ValueError, match="aspect ratio out of range"):
        A.compute_signals(np.zeros((*shape, 3), np.uint8))


def test_wide_panorama_is_analysed_at_a_capped_size():
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 255, (256, 8192, 3), dtype=np.uint8)  # 32:1, inside the range
    small = A.analysis_image(wide)
    assert max(small.shape[:2]) <= A.ANALYSIS_MAX_ASPECT * A.ANALYSIS_SHORT_SIDE
    signals = A.compute_signals(wide)
    assert all(isinstance(v, float) for v in signals.values())


def test_gate_gives_the_strip_an_error_row_and_goes_on(tmp_path: Path):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(np.full((1, 16385, 3), 128, np.uint8)).save(d / "strip.png")
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(d / "ok.png")
    pol = api.load_policy("offline", {"checks": ["artifacts"]})
    result = api.gate([str(d)], pol)
    rows = {Path(r["path"]).name: r for r in result.rows}
    assert rows["strip.png"]["verdict"] == "error"
    assert "aspect ratio out of range" in rows["strip.png"]["error"]
    assert rows["ok.png"]["error"] is None
