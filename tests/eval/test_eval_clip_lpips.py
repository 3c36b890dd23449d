"""CMMD / CLIP-FID on a tiny CLIP through the shared CLIP path; LPIPS through the lpips package.

LPIPS references are built independently of sdeval's backbone loading: lpips' own "pretrained
trunk" path (``pnet_rand=False``) with torchvision's constructor patched to return the same random
state dict sdeval gets from the registry override — so the slice copying is checked, not assumed.
"""

from __future__ import annotations

import csv
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import torch
import open_clip  # noqa: F401
import lpips

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "features"))
from clip_tiny_models import save_pt  # noqa: E402
from eval_models import save_tv_backbone, write_images, restore_offline  # noqa: E402,F401

from sdeval.evaluate.set_eval import diversity_groups, eval_set  # noqa: E402
from sdeval.features.clip import ClipImage  # noqa: E402
from sdeval.inputs.decode import decode  # noqa: E402
from sdeval.metrics.distances import FeatureStats, frechet_distance, mmd_rbf  # noqa: E402
from sdeval.pipeline.run import RunOptions  # noqa: E402


def _opts(**mo: Any) -> RunOptions:
    return RunOptions(batch_size=4, workers=2, cache=False, metric_options={"device": "cpu", **mo})


def test_cmmd_and_clip_fid_on_shared_clip_path(tmp_path: Path) -> None:
    name, weights = save_pt(tmp_path, seed=3)
    gen, ref = write_images(tmp_path / "gen", 7, seed=21), write_images(tmp_path / "ref", 6, seed=22)
    result = eval_set(str(tmp_path / "gen"), ref=str(tmp_path / "ref"), metrics="cmmd,clip_fid",
                      options=_opts(cmmd_clip_model=name, cmmd_clip_pretrained=str(weights)), distributed=False)

    ex = ClipImage({"clip_model": name, "clip_pretrained": str(weights), "device": "cpu"})

    def embed(paths: list[Path]) -> np.ndarray:
        return np.stack(ex.compute([ex.prepare(decode(p.read_bytes()), None) for p in sorted(paths)]))

    g, r = embed(gen), embed(ref)
    assert result.values["cmmd"] == pytest.approx(mmd_rbf(g, r, sigma=10.0, scale=1000.0), rel=1e-6, abs=1e-9)
    a, b = FeatureStats.from_features(g), FeatureStats.from_features(r)
    assert result.values["clip_fid"] == pytest.approx(frechet_distance(a.mu, a.sigma, b.mu, b.sigma), rel=1e-6)
    assert result.values["clip_fid"] > 0
    proto = result.summary["protocol"]["features"]["clip_image_set"]
    assert proto["model"] == f"{name}/file" and proto["weights_sha256"]
    assert result.summary["protocol"]["set_metrics"]["cmmd"]["scale"] == 1000
    assert result.set_metrics["cmmd"]["unbiased"] is True and result.set_metrics["cmmd"]["sigma"] == 10.0


def test_cmmd_defaults_to_vit_l_14_336_openai() -> None:
    from sdeval.features.clip_set import SetClipImage

    ex = SetClipImage({"clip_model": "ViT-B-32"})  # clip_score's backbone option does not move CMMD's
    assert (ex.settings.model_name, ex.settings.pretrained) == ("ViT-L-14-336", "openai")


@pytest.fixture
def lpips_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Any]:
    """(backbone file, lpips.LPIPS whose trunk lpips itself loaded from that file)."""
    import torchvision

    backbone = save_tv_backbone(tmp_path / "w", "alex", seed=7)
    real_alexnet = torchvision.models.alexnet

    def alexnet(*args: Any, **kwargs: Any) -> Any:
        model = real_alexnet(weights=None)
        model.load_state_dict(torch.load(backbone, weights_only=True))
        return model

    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", alexnet)
    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=False, verbose=False).eval()
    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", real_alexnet)
    return backbone, model


def _im(path: Path, size: int = 64) -> Any:
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC))
    return lpips.im2tensor(arr)


def test_lpips_ref_pairs_by_relative_path_stem_and_pairs_file(tmp_path: Path, lpips_reference: tuple) -> None:
    backbone, model = lpips_reference
    g, r = tmp_path / "gen", tmp_path / "ref"
    write_images(g, 4, seed=31, names=["a.png", "sub/b.png", "c.png", "orphan.png"])
    write_images(r, 3, seed=32, names=["a.png", "sub/b.png", "c.jpg"])
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "reference"], ["gen/orphan.png", "ref/a.png"]])
    result = eval_set(str(g), ref=str(r), metrics="lpips_ref",
                      options=_opts(model_paths={"lpips-alex": str(backbone)}, lpips_size=64,
                                    lpips_pairs=str(pairs)), distributed=False)
    got = {Path(row["path"]).relative_to(g).as_posix(): row["lpips_ref"] for row in result.rows}
    expected = {"a.png": r / "a.png", "sub/b.png": r / "sub/b.png", "c.png": r / "c.jpg", "orphan.png": r / "a.png"}
    with torch.no_grad():
        for rel, ref_path in expected.items():
            want = float(model(_im(g / rel), _im(ref_path)).reshape(()))
            assert got[rel] == pytest.approx(want, rel=1e-5, abs=1e-7), rel
    assert result.summary["metrics"]["lpips_ref"]["n"] == 4
    # no reference at all for an image: a missing value with the reason, not a crash
    (g / "lonely.png").write_bytes((g / "a.png").read_bytes()[:-1] + b"\x00")  # also a broken file
    write_images(g, 1, seed=33, names=["zzz.png"])
    result = eval_set(str(g), ref=str(r), metrics="lpips_ref",
                      options=_opts(model_paths={"lpips-alex": str(backbone)}, lpips_size=64), distributed=False)
    row = next(row for row in result.rows if row["path"].endswith("zzz.png"))
    assert row["lpips_ref"] is None and "no paired reference" in row["missing"]["lpips_ref"]
    assert result.summary["protocol"]["metrics"]["lpips_ref"]["net"] == "alex"


def test_lpips_diversity_mean_of_group_means(tmp_path: Path, lpips_reference: tuple) -> None:
    backbone, model = lpips_reference
    d = tmp_path / "gen"
    paths = write_images(d, 6, seed=41)
    groups = ["g1", "g1", "g1", "g2", "g2", "g3"]
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "group", "prompt"])
        for p, grp in zip(paths, groups):
            w.writerow([str(p), grp, "same prompt"])
    result = eval_set(str(manifest), metrics="lpips_diversity",
                      options=_opts(model_paths={"lpips-alex": str(backbone)}, lpips_size=64), distributed=False)
    means = []
    with torch.no_grad():
        for grp in ("g1", "g2"):
            members = [p for p, x in zip(paths, groups) if x == grp]
            means.append(np.mean([float(model(_im(a), _im(b)).reshape(())) for a, b in combinations(members, 2)]))
    entry = result.set_metrics["lpips_diversity"]
    assert entry["value"] == pytest.approx(np.mean(means), rel=1e-5)
    assert entry["groups"] == 2 and entry["singletons"] == 1 and entry["pairs"] == 4 and entry["images"] == 5
    assert [g["group"] for g in entry["lowest_groups"]] == sorted(["g1", "g2"], key=lambda k: means[int(k[1]) - 1])


def test_diversity_groups_by_group_then_prompt_then_all() -> None:
    rows = [{"path": "a", "group": None, "prompt": "cat", "error": None},
            {"path": "b", "group": None, "prompt": "cat", "error": None},
            {"path": "c", "group": "G", "prompt": "cat", "error": None},
            {"path": "d", "group": "G", "prompt": "dog", "error": None},
            {"path": "e", "group": None, "prompt": None, "error": None},
            {"path": "f", "group": None, "prompt": "cat", "error": "unreadable"}]
    groups, counts = diversity_groups(rows)
    assert groups == [("G", ["c", "d"]), ("cat", ["a", "b"])] and counts["ungrouped"] == 1
    groups, _ = diversity_groups([{"path": p, "group": None, "prompt": None, "error": None} for p in "xyz"])
    assert groups == [("(all images)", ["x", "y", "z"])]


def test_lpips_feature_version_stays_in_cache_key_and_protocol(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """LPIPS' own "0.1" no longer overwrites the feature's version: bumping it invalidates the cache."""
    from sdeval.features.lpips_features import LpipsRefPair, LpipsTrunk

    backbone = save_tv_backbone(tmp_path / "w", "alex", seed=1)
    opts = {"model_paths": {"lpips-alex": str(backbone)}, "device": "cpu", "lpips_size": 64}
    def key_of(ex: Any) -> str:  # the trunk is not persisted; its identity keys the cached group values
        return ex.cache_key() if isinstance(ex, LpipsRefPair) else ex.identity_key()

    for cls in (LpipsRefPair, LpipsTrunk):
        before = cls(opts)
        key, proto = key_of(before), before.protocol()
        assert proto["version"] == cls.version == "1" and proto["lpips_version"] == "0.1"
        monkeypatch.setattr(cls, "version", "2")
        after = cls(opts)
        assert key_of(after) != key and after.protocol()["version"] == "2"
        assert after.protocol()["lpips_version"] == "0.1"


def _decode_counter(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts pixel decodes (every decode, by any loader, ends in inputs.decode._mode_to_rgb)."""
    import sdeval.inputs.decode as dec

    calls = [0]
    real = dec._mode_to_rgb

    def counting(im: Any) -> Any:
        calls[0] += 1
        return real(im)

    monkeypatch.setattr(dec, "_mode_to_rgb", counting)
    return calls


def test_lpips_goes_through_the_loader_once_per_image_and_reruns_from_the_cache(
        tmp_path: Path, lpips_reference: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    backbone, _ = lpips_reference
    names = [f"p{i}.png" for i in range(6)]
    paths = write_images(tmp_path / "gen", 6, seed=61, names=names)
    write_images(tmp_path / "ref", 4, seed=62, names=names[:4])
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "group"])
        for i, p in enumerate(paths):
            w.writerow([str(p), f"g{i % 2}"])
    opts = RunOptions(batch_size=4, workers=2, cache_path=str(tmp_path / "f.sqlite"),
                      metric_options={"device": "cpu", "model_paths": {"lpips-alex": str(backbone)},
                                      "lpips_size": 64})
    decodes = _decode_counter(monkeypatch)

    def run(options: RunOptions = opts) -> Any:
        return eval_set(str(manifest), ref=str(tmp_path / "ref"), metrics="lpips_diversity,lpips_ref",
                        options=options, distributed=False)

    cold = run()
    # the main pass decodes the 4 generated images that have a reference, and the references, once
    # (lpips_ref); the group phase reads the 6 generated ones through the same loader: trunk
    # activations (~2.6 MB an image) are not worth a place in the feature cache, group values are
    assert decodes[0] == 4 + 4 + 6
    assert "lpips_trunk" not in cold.summary["features"]
    diversity = cold.set_metrics["lpips_diversity"]
    assert diversity["features"]["lpips_trunk"] == {"cache_hits": 0, "computed": 6}
    assert diversity["group_cache"] == {"cache_hits": 0, "computed": 2}
    decodes[0] = 0
    warm = run()
    assert decodes[0] == 0  # pair distances and group values all come from the cache
    assert warm.set_metrics["lpips_diversity"]["group_cache"] == {"cache_hits": 2, "computed": 0}
    # p4, p5 have no reference: a Missing, never cached, made without decoding a pixel
    assert warm.summary["features"]["lpips_ref_pair"] == {"cache_hits": 4, "computed": 2}
    assert warm.values == cold.values
    assert [r["lpips_ref"] for r in warm.rows] == [r["lpips_ref"] for r in cold.rows]
    from dataclasses import replace

    uncached = run(replace(opts, cache=False))
    assert uncached.values == cold.values  # the cache round trip is exact


def test_lpips_references_are_found_by_discovery_and_decoded_with_the_run_limits(
        tmp_path: Path, lpips_reference: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from sdeval.inputs.decode import DecodeOptions

    # open_image sets Pillow's process-wide limit from the run's; give it back to later tests
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)

    backbone, model = lpips_reference
    g, r = tmp_path / "gen", tmp_path / "ref"
    write_images(g, 2, seed=71, size=(64, 64), names=["a.png", "big.png"])
    write_images(r, 1, seed=72, size=(64, 64), names=["a.jpg"])
    write_images(r, 1, seed=73, size=(160, 160), names=["big.jpg"])
    old_run = r / "old-run"  # a result folder inside the reference folder is not a reference
    write_images(old_run, 1, seed=74, names=["a.jpg"])
    (old_run / ".sdeval-results").write_text("")
    result = eval_set(str(g), ref=str(r), metrics="lpips_ref",
                      options=RunOptions(batch_size=4, workers=2, cache=False, decode=DecodeOptions(max_pixels=10_000),
                                         metric_options={"device": "cpu", "lpips_size": 64,
                                                         "model_paths": {"lpips-alex": str(backbone)}}),
                      distributed=False)
    rows = {Path(row["path"]).name: row for row in result.rows}
    with torch.no_grad():
        want = float(model(_im(g / "a.png"), _im(r / "a.jpg")).reshape(()))
    assert rows["a.png"]["lpips_ref"] == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert rows["big.png"]["lpips_ref"] is None  # 160x160 > --max-pixels 10000, as for any input
    why = rows["big.png"]["missing"]["lpips_ref"]
    assert "reference image" in why and "big.jpg" in why and "decompression bomb" in why
