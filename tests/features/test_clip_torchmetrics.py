"""clip_score against torchmetrics' CLIPScore on the same tiny weights (HF CLIP <-> open_clip).

torchmetrics runs transformers' CLIPModel; the same random weights are written in open_clip's
format and loaded through sdeval. Per image, torchmetrics gives max(100 * cos, 0) (it clamps
the running mean, so one image at a time is one clamp per image): equal to
max(100 * clip_score, 0). Images are made at the model's input size so both resize steps are
the identity and the comparison is about the model, not two resamplers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import torch
import open_clip  # noqa: F401
import transformers  # noqa: F401
import torchmetrics  # noqa: F401

from clip_tiny_models import hf_tiny_pair, images, record  # noqa: E402

from sdeval.features import clip as fclip  # noqa: E402
from sdeval.features.clip import ClipImage, ClipText  # noqa: E402
from sdeval.metrics.base import FeatureBatch  # noqa: E402
from sdeval.metrics.clip_score import ClipScore  # noqa: E402
from sdeval.models import cache as mcache  # noqa: E402

PROMPTS = ["a photo of a cat", "an astronaut riding a horse", "a red car on a wet road at night",
           "a bowl of fruit", "portrait of an old man", "a city skyline at dusk"]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SDEVAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SDEVAL_OFFLINE", raising=False)
    yield
    mcache.reset_offline()
    fclip.clear_backbones()


@pytest.mark.parametrize("negate_text", [False, True])
def test_clip_score_equals_torchmetrics_over_100(tmp_path: Path, negate_text: bool) -> None:
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update
    from torchmetrics.multimodal.clip_score import CLIPScore

    hf_model, processor, name, pt = hf_tiny_pair(tmp_path, seed=3, negate_text=negate_text)
    imgs = images(6, size=(32, 32), seed=3)
    # every image with every prompt: 36 pairs (negate_text flips the sign of all of them, so the
    # clamp in torchmetrics is exercised on both sides)
    pairs = [(i, p) for i in range(len(imgs)) for p in PROMPTS]
    opts = {"clip_model": name, "clip_pretrained": str(pt), "device": "cpu"}
    ci, ct = ClipImage(opts), ClipText(opts)
    emb = ci.compute([ci.prepare(im, record()) for im in imgs])
    recs = [record(prompt=p) for _, p in pairs]
    txt = ct.compute([ct.prepare(None, r) for r in recs])
    ours = np.array(ClipScore(opts).compute(FeatureBatch(recs, {"clip_image": [emb[i] for i, _ in pairs],
                                                                 "clip_text": txt})), dtype=np.float64)
    tensors = [torch.from_numpy(imgs[i]).permute(2, 0, 1).contiguous() for i, _ in pairs]
    with torch.no_grad():
        raw, _ = _clip_score_update(tensors, [p for _, p in pairs], hf_model, processor)
    np.testing.assert_allclose(raw.numpy() / 100.0, ours, atol=1e-5)  # unclamped: 100 * cos
    assert ((ours > 0.01).all() if negate_text else (ours < -0.01).all()) or ((ours > 0).any() and (ours < 0).any())
    metric = CLIPScore(model_name_or_path=lambda: (hf_model, processor))
    for tensor, (_, prompt), score in zip(tensors, pairs, ours):
        metric.reset()
        with torch.no_grad():
            value = float(metric(tensor, prompt))
        assert value == pytest.approx(max(100.0 * score, 0.0), abs=1e-3)
