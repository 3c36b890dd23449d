"""The real ComfyUI outputs of ``../shared/calibration/real-outputs`` against their labels
(``benchmarks/metadata_recovery_labels.json``). The folder is not part of the repository: in a
clean checkout without it these tests are skipped (the pack tests build the same shapes inline).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "benchmarks" / "metadata_recovery_labels.json"
FOLDER = next((up / "shared" / "calibration" / "real-outputs" for up in ROOT.parents[:2]
               if (up / "shared" / "calibration" / "real-outputs").is_dir()), None)

pytestmark = pytest.mark.skipif(FOLDER is None, reason="../shared/calibration/real-outputs is absent")


def _norm(text):
    return None if text is None else "\n".join(x.strip() for x in text.strip().split("\n") if x.strip())


def test_real_outputs_never_get_a_wrong_prompt_and_keep_their_seed() -> None:
    from PIL import Image

    from sdeval.inputs.metadata.reader import read_metadata

    labels = json.loads(LABELS.read_text(encoding="utf-8"))
    checked = 0
    for name, want in labels.items():
        path = FOLDER / name
        if not path.exists():
            continue
        with Image.open(path) as im:
            meta = read_metadata(im, str(path))
        checked += 1
        assert meta.seed == want["seed"], name
        if want["kind"] == "literal":
            assert _norm(meta.prompt) == _norm(want["prompt"]), name
            assert _norm(meta.negative_prompt) == _norm(want["negative_prompt"]), name
        else:
            assert meta.prompt is None, name
            assert any("prompt unknown" in w or "not recorded" in w for w in meta.warnings), name
        read = {s.node_id: s.prompt for s in meta.samplers}
        for sid, text in want["sampler_prompts"].items():
            assert _norm(read.get(sid)) == _norm(text), (name, sid)
    assert checked > 0
