"""The LAION aesthetic v2 head: exact layout, strict loading of a published-format .pth, width check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import torch
import open_clip  # noqa: F401

from clip_tiny_models import TINY_CFG, images, record, save_pt  # noqa: E402

from sdeval.core.errors import EXIT_USAGE, MetricUnavailableError, ModelMissingError  # noqa: E402
from sdeval.features import clip as fclip  # noqa: E402
from sdeval.metrics import aesthetic as maesthetic  # noqa: E402
from sdeval.metrics.aesthetic import Aesthetic, head_class, load_head  # noqa: E402
from sdeval.metrics.base import FeatureBatch, Missing  # noqa: E402
from sdeval.models import cache as mcache  # noqa: E402
from sdeval.models import loaded  # noqa: E402

#: the published file's keys and shapes (improved-aesthetic-predictor, simple_inference.py's MLP)
PUBLISHED = {
    "layers.0.weight": (1024, 768), "layers.0.bias": (1024,),
    "layers.2.weight": (128, 1024), "layers.2.bias": (128,),
    "layers.4.weight": (64, 128), "layers.4.bias": (64,),
    "layers.6.weight": (16, 64), "layers.6.bias": (16,),
    "layers.7.weight": (1, 16), "layers.7.bias": (1,),
}


@pytest.fixture(autouse=True)
def isolated(model_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    loaded.clear(maesthetic.LOADED_KIND)
    yield
    mcache.reset_offline()
    fclip.clear_backbones()


def published_pth(tmp_path: Path, seed: int = 0) -> Path:
    """A .pth written the way the publisher did: torch.save of a plain state dict with these keys."""
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(shape, generator=g) * 0.05 for k, shape in PUBLISHED.items()}
    path = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(state, path)
    return path


def test_head_layout_is_the_published_one() -> None:
    head = head_class()()
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == PUBLISHED
    kinds = [type(m).__name__ for m in head.layers]
    assert kinds == ["Linear", "Dropout", "Linear", "Dropout", "Linear", "Dropout", "Linear", "Linear"]
    assert [m.p for m in head.layers if isinstance(m, torch.nn.Dropout)] == [0.2, 0.2, 0.1]


def test_published_format_loads_strict_and_scores(tmp_path: Path) -> None:
    path = published_pth(tmp_path)
    metric = Aesthetic({"model_paths": {"aesthetic-v2-l14": str(path)}, "offline": True})
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(4, 768)).astype(np.float32)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    batch = FeatureBatch([record() for _ in range(5)],
                         {"clip_image": [unit[0], unit[1], Missing("decode failed"), unit[2], unit[3]]})
    scores = metric.compute(batch)
    state = torch.load(path, weights_only=True)
    x = torch.from_numpy(unit)
    for i in (0, 2, 4, 6):
        x = x @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
    x = x @ state["layers.7.weight"].T + state["layers.7.bias"]  # no activations anywhere
    expected = x[:, 0].numpy()
    got = [s for s in scores if not isinstance(s, Missing)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert isinstance(scores[2], Missing) and scores[2].reason == "decode failed"
    proto = metric.protocol()
    assert proto["weights_sha256"] and proto["trained_on"] == "ViT-L-14/openai"


def test_wrong_keys_or_shapes_fail_loudly(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    renamed = {f"model.{k}": torch.randn(s, generator=g) for k, s in PUBLISHED.items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(ModelMissingError, match="layers.0/2/4/6/7"):
        load_head(tmp_path / "renamed.pth")
    v1 = {"layers.0.weight": torch.zeros(1, 768), "layers.0.bias": torch.zeros(1)}  # a v1 linear head
    torch.save(v1, tmp_path / "v1.pth")
    with pytest.raises(ModelMissingError):
        load_head(tmp_path / "v1.pth")
    (tmp_path / "html.pth").write_text("<!DOCTYPE html><html>not weights</html>")
    with pytest.raises(ModelMissingError, match="could not read"):
        load_head(tmp_path / "html.pth")


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    """weights_only=True: a .pth carrying arbitrary objects is not unpickled."""
    class Evil:
        def __reduce__(self):  # noqa: D105
            return (print, ("pwned",))

    torch.save({"layers.0.weight": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ModelMissingError, match="could not read"):
        load_head(tmp_path / "evil.pth")


def test_backbone_of_another_width_is_a_usage_error(tmp_path: Path) -> None:
    name, pt = save_pt(tmp_path)  # embed_dim 32
    metric = Aesthetic({"clip_model": name, "clip_pretrained": str(pt), "device": "cpu"})
    with pytest.raises(MetricUnavailableError, match="768") as info:
        metric.feature_extractors()
    assert info.value.exit_code == EXIT_USAGE
    # and at compute time too, should the extractor check be bypassed
    path = published_pth(tmp_path)
    metric = Aesthetic({"model_paths": {"aesthetic-v2-l14": str(path)}})
    with pytest.raises(MetricUnavailableError):
        metric.compute(FeatureBatch([record()], {"clip_image": [np.ones(512, np.float32) / np.sqrt(512)]}))


def test_end_to_end_on_a_768_wide_tiny_backbone(tmp_path: Path) -> None:
    name, pt = save_pt(tmp_path, cfg={**TINY_CFG, "embed_dim": 768})
    path = published_pth(tmp_path)
    opts = {"clip_model": name, "clip_pretrained": str(pt), "device": "cpu",
            "model_paths": {"aesthetic-v2-l14": str(path)}}
    metric = Aesthetic(opts)
    [extractor] = metric.feature_extractors()
    emb = extractor.compute([extractor.prepare(im, record()) for im in images(3)])
    scores = metric.compute(FeatureBatch([record()] * 3, {"clip_image": emb}))
    assert all(isinstance(s, float) for s in scores)
    assert metric.protocol()["backbone_matches_training"] is False  # a tiny model is not ViT-L/14 openai


def test_missing_weights_offline_name_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDEVAL_OFFLINE", "1")
    metric = Aesthetic({})
    with pytest.raises(ModelMissingError, match="sdeval models fetch aesthetic-v2-l14") as info:
        metric.compute(FeatureBatch([record()], {"clip_image": [np.ones(768, np.float32) / np.sqrt(768)]}))
    assert "SDEVAL_MODEL_AESTHETIC_V2_L14" in str(info.value)
