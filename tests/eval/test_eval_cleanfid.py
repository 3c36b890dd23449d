"""FID/KID against clean-fid itself: same folders, same (random stand-in) Inception TorchScript file.

clean-fid loads the file with its own ``InceptionV3W`` (passed as ``custom_feat_extractor``; for
``compute_kid``, which has no such argument, its ``build_feature_extractor`` is patched to return
the same wrapper). sdeval loads it through its model registry (``model_paths`` override).

scipy's ``sqrtm`` on a singular 2048 x 2048 product takes over a minute on two cores, so the
default tests let clean-fid run its whole pipeline (files, resize, dataloader, model, mean,
covariance) and hand its mu/sigma to sdeval's Fréchet function, which tests/metrics/test_distances.py
compares with clean-fid's and scipy's. The fully unpatched comparison runs with SDEVAL_SLOW_TESTS=1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import torch
from cleanfid import fid as cleanfid_fid

sys.path.insert(0, str(Path(__file__).parent))
from eval_models import save_inception_standin, write_images, restore_offline  # noqa: E402,F401

from sdeval.evaluate.set_eval import eval_set  # noqa: E402
from sdeval.features.inception import InceptionFeatures  # noqa: E402
from sdeval.metrics.distances import frechet_distance  # noqa: E402
from sdeval.pipeline.run import RunOptions  # noqa: E402

REL = 1e-4


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fid")
    weights_dir = root / "weights"
    save_inception_standin(weights_dir, seed=0)
    write_images(root / "gen", 14, seed=1)
    write_images(root / "ref", 11, seed=2)
    write_images(root / "gen_sq", 8, seed=3, size=(96, 96))   # legacy_tensorflow batches raw images:
    write_images(root / "ref_sq", 7, seed=4, size=(112, 112))  # one size per folder, as clean-fid needs
    return {"root": root, "weights_dir": weights_dir, "weights": weights_dir / "inception-2015-12-05.pt",
            "gen": root / "gen", "ref": root / "ref", "gen_sq": root / "gen_sq", "ref_sq": root / "ref_sq"}


def _options(sets: dict[str, Path], mode: str = "clean", **extra: Any) -> RunOptions:
    return RunOptions(batch_size=8, workers=2, cache=False, metric_options={
        "model_paths": {"inception-2015-12-05": str(sets["weights"])}, "device": "cpu", "fid_mode": mode, **extra})


def _cleanfid_extractor(sets: dict[str, Path], mode: str) -> Any:
    from cleanfid.inception_torchscript import InceptionV3W

    return InceptionV3W(str(sets["weights_dir"]), download=False,
                        resize_inside=(mode == "legacy_tensorflow")).eval()


@pytest.fixture
def fast_cleanfid_frechet(monkeypatch: pytest.MonkeyPatch) -> list[tuple[np.ndarray, ...]]:
    """clean-fid's own mu/sigma, the distance from sdeval's exact formula (see the module docstring)."""
    seen: list[tuple[np.ndarray, ...]] = []

    def frechet(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
        seen.append((mu1, sigma1, mu2, sigma2))
        return frechet_distance(mu1, sigma1, mu2, sigma2)

    monkeypatch.setattr(cleanfid_fid, "frechet_distance", frechet)
    return seen


def _cleanfid_kid(monkeypatch: pytest.MonkeyPatch, sets: dict[str, Path], gen: Path, ref: Path, mode: str) -> float:
    monkeypatch.setattr(cleanfid_fid, "build_feature_extractor",
                        lambda mode, device=None, use_dataparallel=True: _cleanfid_extractor(sets, mode))
    np.random.seed(0)  # clean-fid's KID draws its subsets from numpy's global state
    return float(cleanfid_fid.compute_kid(str(gen), str(ref), mode=mode, num_workers=0, batch_size=8,
                                          device=torch.device("cpu"), verbose=False))


@pytest.mark.parametrize("mode, gen, ref", [("clean", "gen", "ref"), ("legacy_tensorflow", "gen_sq", "ref_sq")])
def test_fid_and_kid_match_cleanfid(sets: dict[str, Path], mode: str, gen: str, ref: str,
                                    fast_cleanfid_frechet: list, monkeypatch: pytest.MonkeyPatch) -> None:
    result = eval_set(str(sets[gen]), ref=str(sets[ref]), metrics="fid,kid", options=_options(sets, mode),
                      distributed=False)
    ref_fid = float(cleanfid_fid.compute_fid(str(sets[gen]), str(sets[ref]), mode=mode,
                                             custom_feat_extractor=_cleanfid_extractor(sets, mode), num_workers=0,
                                             batch_size=8, device=torch.device("cpu"), verbose=False))
    ref_kid = _cleanfid_kid(monkeypatch, sets, sets[gen], sets[ref], mode)
    assert ref_fid > 1.0 and abs(ref_kid) > 1e-5  # the stand-in gives meaningful, non-degenerate features
    assert result.values["fid"] == pytest.approx(ref_fid, rel=REL)
    assert result.values["kid"] == pytest.approx(ref_kid, rel=REL)
    assert len(fast_cleanfid_frechet) == 1
    # the protocol names what made the numbers
    proto = result.summary["protocol"]["features"]["inception"]
    assert proto["mode"] == mode and proto["model"] == "inception-2015-12-05"
    assert proto["weights_sha256"] and proto["weights_file"] == str(sets["weights"])


@pytest.mark.parametrize("optimize", [False, True])
def test_features_equal_cleanfid_features(sets: dict[str, Path], optimize: bool) -> None:
    """Per-image features, not only the distances: clean-fid's loader + resize + model vs sdeval's.

    Run as clean-fid runs it (``inception_optimize=False``) they are identical; frozen and optimised
    for CPU (the default there: batch norms folded, oneDNN kernels) they agree to ~1e-6.
    """
    from PIL import Image

    files = sorted(str(p) for p in sets["gen"].glob("*.png"))
    theirs = cleanfid_fid.get_files_features(files, _cleanfid_extractor(sets, "clean"), num_workers=0, batch_size=7,
                                             device=torch.device("cpu"), mode="clean", verbose=False)
    ex = InceptionFeatures({"model_paths": {"inception-2015-12-05": str(sets["weights"])}, "device": "cpu",
                            "batch_size": 7, "inception_optimize": optimize})
    assert ex.optimize() is optimize
    ours = np.stack(ex.compute([ex.prepare(np.asarray(Image.open(f).convert("RGB")), None) for f in files]))
    assert ours.dtype == np.float32 and ours.shape == (len(files), 2048)
    if optimize:
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(ours, theirs)


def test_kid_subset_size_capped_and_small_n_recorded(sets: dict[str, Path]) -> None:
    result = eval_set(str(sets["gen"]), ref=str(sets["ref"]), metrics="fid,kid", options=_options(sets),
                      distributed=False)
    kid = result.set_metrics["kid"]
    assert kid["subset_size"] == 11 and kid["std"] > 0 and kid["subsets"] == 100
    fid = result.set_metrics["fid"]
    assert fid["small_n"] is True and fid["n_generated"] == 14 and fid["n_reference"] == 11
    assert any("Prefer KID or CMMD" in w for w in result.summary["warnings"])


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SDEVAL_SLOW_TESTS"), reason="scipy sqrtm on 2048x2048 takes > 1 min; "
                                                                      "set SDEVAL_SLOW_TESTS=1")
def test_fid_matches_unpatched_cleanfid(sets: dict[str, Path]) -> None:
    result = eval_set(str(sets["gen"]), ref=str(sets["ref"]), metrics="fid", options=_options(sets),
                      distributed=False)
    ref_fid = float(cleanfid_fid.compute_fid(str(sets["gen"]), str(sets["ref"]), mode="clean",
                                             custom_feat_extractor=_cleanfid_extractor(sets, "clean"), num_workers=0,
                                             batch_size=8, device=torch.device("cpu"), verbose=False))
    assert result.values["fid"] == pytest.approx(ref_fid, rel=REL)
