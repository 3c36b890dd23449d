"""The pipeline's promises: one backbone forward per image whatever number of metrics read it, and a
second run over the same files does no forward and no full decode (feature cache)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import open_clip  # noqa: F401
import torch  # noqa: E402

import sdeval  # noqa: E402
from sdeval.features import clip as fclip  # noqa: E402
from sdeval.metrics import registry  # noqa: E402
from sdeval.metrics.base import FeatureBatch, ImageMetric  # noqa: E402
from sdeval.pipeline.run import RunOptions  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "features"))
from clip_tiny_models import TINY_CFG, save_pt  # noqa: E402


class EmbeddingSpread(ImageMetric):
    """A third CLIP-based metric, as a plug-in would write it."""

    name = "embedding_spread"
    requires = ("clip_image",)
    higher_is_better = True

    def compute(self, batch: FeatureBatch):
        return [float(np.std(e)) for e in batch["clip_image"]]


@pytest.fixture
def setup(tmp_path: Path, photo_dir: Path):
    cfg = {**TINY_CFG, "embed_dim": 768}
    name, weights = save_pt(tmp_path, cfg=cfg)
    from sdeval.metrics.aesthetic import head_class

    torch.manual_seed(0)
    head_path = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(head_class()().state_dict(), head_path)
    manifest = photo_dir / "m.csv"
    manifest.write_text("path,prompt\n" + "".join(f"{p.name},a photo of {p.stem}\n"
                                                  for p in sorted(photo_dir.glob("*.png"))))
    registry.register(EmbeddingSpread)
    policy = sdeval.load_policy(str(tmp_path / "p.toml") if (tmp_path / "p.toml").write_text(
        'rules = ["clip_score < -2 -> reprompt", "aesthetic < -1000 -> reseed", "embedding_spread < 0 -> reseed"]\n'
    ) else None)
    options = RunOptions(batch_size=2, workers=2, cache_path=str(tmp_path / "features.sqlite"), metric_options={
        "clip_model": name, "clip_pretrained": str(weights), "device": "cpu",
        "model_paths": {"aesthetic-v2-l14": str(head_path)}})
    yield manifest, policy, options
    fclip.clear_backbones()


def test_one_image_forward_per_image_and_a_warm_run_does_none(setup, monkeypatch):
    manifest, policy, options = setup
    fclip.clear_backbones()
    first = sdeval.gate(str(manifest), policy, options=options)
    n = len(first.rows)
    counts = fclip.forward_counts()
    assert counts["images_encoded"] == n == 5  # clip_score + aesthetic + embedding_spread: one forward
    assert counts["image_calls"] == 3  # batches of 2
    assert counts["texts_encoded"] == n  # five distinct prompts, once each
    assert all(r["clip_score"] is not None and r["aesthetic"] is not None for r in first.rows)
    assert first.summary["features"]["clip_image"] == {"cache_hits": 0, "computed": n}

    import sdeval.pipeline.decode_pool as loader

    def no_decode(*a, **k):
        raise AssertionError("a warm run must not decode pixels")

    monkeypatch.setattr(loader, "to_rgb", no_decode)
    second = sdeval.gate(str(manifest), policy, options=options)
    assert fclip.forward_counts() == counts
    assert second.summary["features"]["clip_image"] == {"cache_hits": n, "computed": 0}
    for a, b in zip(first.rows, second.rows):
        for m in ("clip_score", "aesthetic", "embedding_spread", "pixel_std"):
            if m in a:
                assert a[m] == pytest.approx(b[m], abs=1e-6)


def test_no_cache_recomputes(setup):
    manifest, policy, options = setup
    from dataclasses import replace

    fclip.clear_backbones()
    sdeval.gate(str(manifest), policy, options=replace(options, cache=False))
    sdeval.gate(str(manifest), policy, options=replace(options, cache=False))
    assert fclip.forward_counts()["images_encoded"] == 10


def test_image_without_prompt_fails_with_reason(setup):
    _, policy, options = setup
    photo = next(iter(sorted(Path(setup[0]).parent.glob("astronaut.png"))))
    result = sdeval.gate(str(photo), policy, options=options)
    (row,) = result.rows
    assert row["clip_score"] is None and row["verdict"] == "reprompt"
    assert "clip_score missing: no prompt" in row["reasons"][0]
