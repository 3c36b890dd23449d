"""CLIP extractors and clip_score on tiny open_clip models loaded through sdeval's normal path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import torch
import open_clip

from clip_tiny_models import TINY_CFG, images, record, register_tiny, save_local_dir, save_pt  # noqa: E402

from sdeval.core.errors import EXIT_USAGE, ModelMissingError, UsageError  # noqa: E402
from sdeval.features import clip as fclip  # noqa: E402
from sdeval.features.clip import ClipImage, ClipText, TextEmbedding, forward_counts  # noqa: E402
from sdeval.features.registry import create_extractor  # noqa: E402
from sdeval.metrics.base import FeatureBatch, Missing  # noqa: E402
from sdeval.metrics.clip_score import ClipScore  # noqa: E402
from sdeval.models import cache as mcache  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["a photo of a cat", "an astronaut riding a horse", "a red car on a wet road at night"]


@pytest.fixture(autouse=True)
def isolated(model_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
    mcache.reset_offline()
    fclip.clear_backbones()


def _direct(name: str, pretrained: str | None, imgs: list[np.ndarray], prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings computed with open_clip's own API, no sdeval code involved."""
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    with torch.no_grad():
        x = torch.stack([preprocess(Image.fromarray(im)) for im in imgs])
        img = torch.nn.functional.normalize(model.encode_image(x), dim=-1).numpy()
        txt = torch.nn.functional.normalize(model.encode_text(tokenizer(prompts)), dim=-1).numpy()
    return img, txt


def _run(opts: dict, imgs: list[np.ndarray], prompts: list[str | None]) -> tuple[list, list]:
    ci, ct = ClipImage(opts), ClipText(opts)
    recs = [record(prompt=p) for p in prompts]
    emb = ci.compute([ci.prepare(im, r) for im, r in zip(imgs, recs)])
    txt = ct.compute([ct.prepare(None, r) for r in recs])
    return emb, txt


def test_pt_checkpoint_matches_open_clip_directly(tmp_path: Path) -> None:
    name, pt = save_pt(tmp_path, seed=1)
    imgs = images(3, size=(64, 48))
    opts = {"clip_model": name, "clip_pretrained": str(pt), "device": "cpu", "batch_size": 2}
    emb, txt = _run(opts, imgs, PROMPTS)
    ref_img, ref_txt = _direct(name, str(pt), imgs, PROMPTS)
    np.testing.assert_allclose(np.stack(emb), ref_img, atol=1e-5)
    np.testing.assert_allclose(np.stack([t.vector for t in txt]), ref_txt, atol=1e-5)
    assert all(e.dtype == np.float32 and abs(np.linalg.norm(e) - 1) < 1e-5 for e in emb)
    # clip_score is the raw cosine of the two, computed by open_clip directly
    batch = FeatureBatch([record(prompt=p) for p in PROMPTS], {"clip_image": emb, "clip_text": txt})
    scores = ClipScore().compute(batch)
    np.testing.assert_allclose(scores, np.sum(ref_img * ref_txt, axis=1), atol=1e-5)


@pytest.mark.parametrize("form", ["pretrained", "model"])
def test_local_dir_form_matches_open_clip(tmp_path: Path, form: str) -> None:
    directory = save_local_dir(tmp_path, seed=2)
    imgs = images(2)
    key = "clip_pretrained" if form == "pretrained" else "clip_model"
    emb, txt = _run({key: f"local-dir:{directory}", "device": "cpu"}, imgs, PROMPTS[:2])
    ref_img, ref_txt = _direct(f"local-dir:{directory}", None, imgs, PROMPTS[:2])
    np.testing.assert_allclose(np.stack(emb), ref_img, atol=1e-5)
    np.testing.assert_allclose(np.stack([t.vector for t in txt]), ref_txt, atol=1e-5)


def test_static_preprocessing_equals_the_loaded_models(tmp_path: Path) -> None:
    """prepare() runs before (or without) the model load: its transform must be the model's own."""
    name, pt = save_pt(tmp_path)
    directory = save_local_dir(tmp_path)
    for opts in ({"clip_model": name, "clip_pretrained": str(pt)}, {"clip_pretrained": f"local-dir:{directory}"}):
        extractor = ClipImage({**opts, "device": "cpu"})
        static = {k: (tuple(v) if isinstance(v, list) else v) for k, v in extractor.weights().preprocess.items()}
        loaded = extractor.backbone().model.visual.preprocess_cfg
        assert static == {k: (tuple(v) if isinstance(v, list) else v) for k, v in loaded.items()}


def test_long_prompt_is_truncated_keeping_end_of_text(tmp_path: Path) -> None:
    name, pt = save_pt(tmp_path)
    opts = {"clip_model": name, "clip_pretrained": str(pt), "device": "cpu"}
    long_prompt = " ".join(["masterpiece, best quality, highly detailed portrait of a knight"] * 12)
    ct = ClipText(opts)
    backbone = ct.backbone()
    ids, n, truncated = fclip.tokenize(backbone.tokenizer, long_prompt, 77)
    assert truncated and n > 77 and len(ids) == 77 and ids[-1] == backbone.tokenizer.eot_token_id
    [emb] = ct.compute([long_prompt])
    assert isinstance(emb, TextEmbedding) and emb.truncated and "truncated to 77" in (emb.warning or "")
    with torch.no_grad():
        kept = torch.nn.functional.normalize(backbone.model.encode_text(torch.tensor([ids])), dim=-1)[0].numpy()
        naive = torch.tensor([[backbone.tokenizer.sot_token_id] + backbone.tokenizer.encode(long_prompt)[:76]])
        cut = torch.nn.functional.normalize(backbone.model.encode_text(naive), dim=-1)[0].numpy()
    np.testing.assert_allclose(emb.vector, kept, atol=1e-5)
    assert not np.allclose(emb.vector, cut, atol=1e-3)  # dropping the EOT token changes the embedding
    # the warning reaches the row through the metric
    batch = FeatureBatch([record(prompt=long_prompt), record(prompt="short")],
                         {"clip_image": [emb.vector, emb.vector], "clip_text": [emb, ct.compute(["short"])[0]]})
    warnings = ClipScore().record_warnings(batch)
    assert len(warnings[0]) == 1 and "tokens" in warnings[0][0] and warnings[1] == ()


def test_text_encoded_once_per_distinct_prompt(tmp_path: Path) -> None:
    name, pt = save_pt(tmp_path)
    ct = ClipText({"clip_model": name, "clip_pretrained": str(pt), "device": "cpu"})
    prompts = [PROMPTS[i % 3] for i in range(10)] + [None, ""]
    before = forward_counts()["texts_encoded"]
    out = ct.compute(prompts)
    assert forward_counts()["texts_encoded"] - before == 3
    assert out[0] is out[3] and isinstance(out[10], Missing) and out[10].reason == "no prompt"
    assert isinstance(out[11], Missing)
    ct.compute(prompts)
    assert forward_counts()["texts_encoded"] - before == 3  # memoised across batches


def test_image_without_prompt_scores_missing(tmp_path: Path) -> None:
    name, pt = save_pt(tmp_path)
    emb, txt = _run({"clip_model": name, "clip_pretrained": str(pt), "device": "cpu"}, images(2), [PROMPTS[0], None])
    scores = ClipScore().compute(FeatureBatch([record(), record(prompt=None)], {"clip_image": emb, "clip_text": txt}))
    assert isinstance(scores[0], float) and isinstance(scores[1], Missing) and scores[1].reason == "no prompt"


def test_one_model_and_one_forward_shared_by_clip_metrics(tmp_path: Path) -> None:
    """clip_score and aesthetic ask for the same extractor id; one model serves both."""
    from sdeval.metrics.aesthetic import Aesthetic

    cfg = {**TINY_CFG, "embed_dim": 768}
    name, pt = save_pt(tmp_path, cfg=cfg)
    opts = {"clip_model": name, "clip_pretrained": str(pt), "device": "cpu"}
    a = {e.id: e for e in ClipScore(opts).feature_extractors()}
    b = {e.id: e for e in Aesthetic(opts).feature_extractors()}
    assert set(a) == {"clip_image", "clip_text"} and set(b) == {"clip_image"}
    assert a["clip_image"].cache_key() == b["clip_image"].cache_key()
    assert a["clip_image"].backbone() is b["clip_image"].backbone() is a["clip_text"].backbone()
    before = forward_counts()
    a["clip_image"].compute([a["clip_image"].prepare(im, record()) for im in images(5)])
    after = forward_counts()
    assert after["images_encoded"] - before["images_encoded"] == 5


def test_registry_builds_the_extractors() -> None:
    assert isinstance(create_extractor("clip_image", {"device": "cpu"}), ClipImage)
    assert isinstance(create_extractor("clip_text", {}), ClipText)
    from sdeval.metrics import registry

    assert registry.resolve("clip") == "clip_score"
    assert registry.get_class("clip_score") is ClipScore
    assert registry.get_class("aesthetic").default_action == "reseed"
    assert ClipScore.default_action == "reprompt" and ClipScore.range == (-1.0, 1.0)


def test_cache_key_identifies_weights_and_preprocessing(tmp_path: Path) -> None:
    name, pt1 = save_pt(tmp_path, seed=1)
    _, pt2 = save_pt(tmp_path, seed=2)
    k1 = ClipImage({"clip_model": name, "clip_pretrained": str(pt1), "device": "cpu"}).cache_key()
    k1b = ClipImage({"clip_model": name, "clip_pretrained": str(pt1), "device": "cpu"}).cache_key()
    k2 = ClipImage({"clip_model": name, "clip_pretrained": str(pt2), "device": "cpu"}).cache_key()
    t1 = ClipText({"clip_model": name, "clip_pretrained": str(pt1), "device": "cpu"}).cache_key()
    assert k1 == k1b and k1 != k2 and k1 != t1
    assert k1 is not None and k1.startswith(f"clip_image/{name}/file/") and "/fp32/" in k1
    # the same path rewritten with other weights: the memoised hash notices (size+mtime) and the key moves
    shutil.copyfile(pt2, pt1)
    os.utime(pt1, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    k1c = ClipImage({"clip_model": name, "clip_pretrained": str(pt1), "device": "cpu"}).cache_key()
    assert k1c == k2
    # random weights have nothing stable to key on: never cached
    assert ClipImage({"clip_model": name, "clip_pretrained": "none", "device": "cpu"}).cache_key() is None


def test_warm_cache_key_needs_no_open_clip_import(tmp_path: Path) -> None:
    """A second run learns its cache key from the resolution memo: no open_clip (timm, transformers)."""
    name, pt = save_pt(tmp_path, seed=1)
    directory = save_local_dir(tmp_path, seed=1)
    for opts in ({"clip_model": name, "clip_pretrained": str(pt), "device": "cpu"},
                 {"clip_pretrained": f"local-dir:{directory}", "device": "cpu"}):
        key = ClipImage(opts).cache_key()
        code = ("import json, sys\n"
                "from sdeval.features.clip import ClipImage\n"
                f"print(json.dumps([ClipImage({opts!r}).cache_key(), 'open_clip' in sys.modules]))\n")
        env = {**os.environ, "SDEVAL_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=120, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1]) == [key, False]


def test_protocol_records_model_weights_and_dtype(tmp_path: Path) -> None:
    name, pt = save_pt(tmp_path)
    proto = ClipImage({"clip_model": name, "clip_pretrained": str(pt), "device": "cpu"}).protocol()
    assert proto["weights_sha256"] and proto["device"] == "cpu" and proto["autocast"] is None
    assert proto["preprocessing"]["interpolation"] == "bicubic" and proto["embed_dim"] == 32
    with pytest.raises(UsageError, match="CUDA"):
        ClipImage({"clip_model": name, "clip_pretrained": str(pt), "device": "cpu", "clip_precision": "fp16"}).autocast()


def test_quick_gelu_forced_for_tags_that_need_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_clip 3.x only warns when e.g. ViT-L-14 meets the openai tag; sdeval forces QuickGELU."""
    cfg = {k: v for k, v in TINY_CFG.items() if k != "quick_gelu"}
    name = register_tiny(tmp_path, cfg)
    qname, pt = save_pt(tmp_path, cfg=TINY_CFG)  # weights trained "with" QuickGELU
    from open_clip import pretrained as op

    monkeypatch.setitem(op._PRETRAINED, name, {"sdevaltest": {"hf_hub": "sdevaltest/none/", "quick_gelu": True,
                                                               "interpolation": "bicubic", "resize_mode": "shortest"}})
    opts = {"clip_model": name, "clip_pretrained": "sdevaltest", "device": "cpu",
            "model_paths": {f"open_clip:{name}/sdevaltest": str(pt)}}
    extractor = ClipImage(opts)
    ref = extractor.weights()
    assert ref.force_quick_gelu and ref.registry_id == f"open_clip:{name}/sdevaltest"
    model = extractor.backbone().model
    assert type(model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    imgs = images(2)
    emb = extractor.compute([extractor.prepare(im, record()) for im in imgs])
    ref_img, _ = _direct(qname, str(pt), imgs, ["x"])
    np.testing.assert_allclose(np.stack(emb), ref_img, atol=1e-5)
    # offline and without the override: fails at once, naming the id and the command
    monkeypatch.setenv("SDEVAL_OFFLINE", "1")
    with pytest.raises(ModelMissingError, match=f"sdeval models fetch open_clip:{name}/sdevaltest") as info:
        ClipImage({"clip_model": name, "clip_pretrained": "sdevaltest"}).check_available()
    assert info.value.exit_code == EXIT_USAGE


def test_bad_settings_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown open_clip model"):
        ClipImage({"clip_model": "ViT-Nope-99"}).check_available()
    with pytest.raises(UsageError, match="no pretrained tag 'nope'"):
        ClipImage({"clip_model": "ViT-B-32", "clip_pretrained": "nope"}).check_available()
    with pytest.raises(UsageError, match="looks like a path"):
        ClipImage({"clip_pretrained": str(tmp_path / "missing.pt")}).check_available()
    with pytest.raises(UsageError, match="batch_size"):
        ClipImage({"batch_size": 0})


@pytest.mark.slow
def test_offline_missing_default_weights_fail_fast_in_a_fresh_process(tmp_path: Path) -> None:
    """The real path: HF_HUB_OFFLINE reaches huggingface_hub before open_clip imports it, and no
    connection is attempted (the hub endpoint points at a local socket that counts connections)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    env = {**os.environ, "SDEVAL_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_ENDPOINT": f"http://127.0.0.1:{port}",
           "SDEVAL_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_OFFLINE", None)
    code = (
        "import time, json\n"
        "from sdeval.features.clip import ClipImage\n"
        "from sdeval.core.errors import ModelMissingError\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    ClipImage({}).check_available()\n"
        "    print(json.dumps({'error': None}))\n"
        "except ModelMissingError as e:\n"
        "    import huggingface_hub.constants as c\n"
        "    print(json.dumps({'error': str(e), 'secs': time.monotonic() - t, 'hf_offline': c.HF_HUB_OFFLINE}))\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=180, cwd=ROOT)
        try:
            conn, _ = listener.accept()
            conn.close()
            connections = 1
        except socket.timeout:
            connections = 0
    finally:
        listener.close()
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"] and "clip-vit-l-14-openai" in result["error"]
    assert "sdeval models fetch clip-vit-l-14-openai" in result["error"]
    assert result["hf_offline"] is True and connections == 0
    # mostly the open_clip import; huggingface_hub's retries alone would take ~45 s more
    assert result["secs"] < 40
    assert out.stdout.count("\n") == 1  # library code printed nothing


def test_importing_clip_modules_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import sdeval.features.clip, sdeval.features.cache, sdeval.metrics.clip_score, sdeval.metrics.aesthetic\n"
        "import sdeval.models\n"
        "from sdeval.metrics import registry\n"
        "registry.resolve('clip'); registry.resolve('aesthetic')\n"
        "sdeval.models.list_models()\n"
        "print(sorted(m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast_is_recorded_and_close_to_fp32(tmp_path: Path) -> None:
    name, pt = save_pt(tmp_path, seed=4)
    imgs = images(8, size=(96, 80))
    base = {"clip_model": name, "clip_pretrained": str(pt)}
    gpu = ClipImage({**base, "device": "auto"})
    cpu = ClipImage({**base, "device": "cpu"})
    assert gpu.device().startswith("cuda") and gpu.protocol()["autocast"] == "float16"
    assert gpu.cache_key() != cpu.cache_key() and "/amp-fp16/" in (gpu.cache_key() or "")
    a = np.stack(gpu.compute([gpu.prepare(im, record()) for im in imgs]))
    b = np.stack(cpu.compute([cpu.prepare(im, record()) for im in imgs]))
    assert a.dtype == np.float32 and (np.sum(a * b, axis=1) > 0.999).all()
    fp32 = ClipImage({**base, "device": "cuda", "clip_precision": "fp32"})
    np.testing.assert_allclose(np.stack(fp32.compute([fp32.prepare(im, record()) for im in imgs])), b, atol=1e-4)
