"""Artifact signals, metrics and checks on synthetic inputs with known answers and on photos.

Photos come from scikit-image's wheel (no download). Tolerances are written next to each test.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from sdeval.features import artifacts as A
from sdeval.features.registry import create_extractor
from sdeval.gates.checks import CHECKS, FAMILIES
from sdeval.inputs.record import ImageRecord
from sdeval.metrics import registry
from sdeval.metrics.base import FeatureBatch, Missing

ARTIFACT_CHECKS = ("blur", "low_contrast", "exposure", "oversaturation", "noise", "latent_grid", "duplication")


# -- helpers -----------------------------------------------------------------------------------
def rectangles(n: int = 512, seed: int = 0) -> np.ndarray:
    """Sharp-edged random coloured rectangles on grey: a synthetic 'in focus' image."""
    rng = np.random.default_rng(seed)
    img = np.full((n, n, 3), 128, np.uint8)
    for _ in range(60):
        x0, y0 = rng.integers(0, n, 2)
        w, h = rng.integers(n // 25, n // 3, 2)
        img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3)
    return img


def smooth_field(n: int = 512, seed: int = 0) -> np.ndarray:
    """A smooth colourful image with no lattice, edge or repetition (blurred noise, stretched)."""
    rng = np.random.default_rng(seed)
    f = cv2.GaussianBlur(rng.normal(0, 1, (n, n, 3)).astype(np.float32), (0, 0), n / 40)
    f = (f - f.min()) / (f.max() - f.min())
    return np.clip(30 + 195 * f, 0, 255).astype(np.uint8)


def photo(name: str, short: int = 512) -> np.ndarray:
    img = getattr(skdata, name)()
    h, w = img.shape[:2]
    s = short / min(h, w)
    size = (round(w * s), round(h * s))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)


def signals(img: np.ndarray) -> dict[str, float]:
    return A.compute_signals(img)


def metric_values(img: np.ndarray, names: list[str], fmt: str = "PNG") -> dict[str, float | Missing]:
    """Run metrics the way the pipeline does: registry -> extractor.prepare/compute -> metric."""
    record = ImageRecord(path="x.png", format=fmt, width=img.shape[1], height=img.shape[0])
    metrics = [registry.create(n) for n in names]
    extractors = {}
    for m in metrics:
        for ex in m.feature_extractors():
            extractors.setdefault(ex.id, ex)
    feats = {fid: list(ex.compute([ex.prepare(img, record)])) for fid, ex in extractors.items()}
    batch = FeatureBatch(records=[record], features=feats)
    return {m.name: m.compute(batch)[0] for m in metrics}


def fired_checks(img: np.ndarray, fmt: str = "PNG") -> set[str]:
    names = list(dict.fromkeys(r.metric for c in ARTIFACT_CHECKS for r in CHECKS[c].rules))
    values = metric_values(img, names, fmt)
    out = set()
    for c in ARTIFACT_CHECKS:
        for rule in CHECKS[c].rules:
            v = values[rule.metric]
            if (isinstance(v, Missing) and rule.on_missing == "fire") or (
                    not isinstance(v, Missing) and rule.fires(v)):
                out.add(c)
    return out


# -- the contract ------------------------------------------------------------------------------
def test_signals_are_finite_floats_in_a_stable_order():
    s = signals(rectangles())
    assert tuple(s) == A.SIGNALS
    assert all(isinstance(v, float) and math.isfinite(v) for v in s.values())


def test_extractor_is_registered_and_records_the_analysis_size():
    ex = create_extractor("artifact_signals", {})
    assert ex.id == "artifact_signals"
    assert ex.protocol()["analysis_short_side"] == A.ANALYSIS_SHORT_SIDE == 512
    out = ex.prepare(rectangles(), ImageRecord(path="x"))
    assert list(ex.compute([out])) == [out]  # CPU work happens in prepare


def test_every_artifact_metric_resolves_and_requires_the_shared_feature():
    names = {r.metric for c in ARTIFACT_CHECKS for r in CHECKS[c].rules}
    for name in names | {"laplacian_var", "colourfulness", "saturation"}:
        cls = registry.get_class(registry.resolve(name))
        assert cls.requires == ("artifact_signals",), name
        assert cls.unit and cls.description and isinstance(cls.higher_is_better, bool)
    assert registry.resolve("colorfulness") == "colourfulness"


def test_artifacts_family_has_every_check_and_blank():
    assert set(FAMILIES["artifacts"]) == set(ARTIFACT_CHECKS) | {"blank"}
    for c in ARTIFACT_CHECKS:
        assert all(r.action == "reseed" for r in CHECKS[c].rules)
        metrics = [r.metric for r in CHECKS[c].rules]
        assert len(metrics) == len(set(metrics)), "a check's metrics must be distinct to be tunable"


def test_prepare_is_thread_safe():
    imgs = [rectangles(seed=i) for i in range(4)]
    expected = [signals(i) for i in imgs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(signals, imgs * 3))
    assert got == expected * 3


# -- known answers -----------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_blur_estimates_the_gaussian_sigma(sigma):
    # the estimate reads edge width in analysis px: within 20% of the blur added to sharp edges
    est = signals(cv2.GaussianBlur(rectangles(), (0, 0), sigma))["blur"]
    assert est == pytest.approx(sigma, rel=0.2)


def test_blur_ignores_contrast_and_exposure_unlike_laplacian_variance():
    img = rectangles().astype(np.float32)
    dull = np.clip(128 + 0.3 * (img - 128), 0, 255).astype(np.uint8)
    a, b = signals(rectangles()), signals(dull)
    assert b["blur"] == pytest.approx(a["blur"], abs=0.1)
    assert b["laplacian_var"] < 0.15 * a["laplacian_var"]  # the folk measure calls it blurry


def test_motion_blur_is_directional():
    kernel = np.zeros((15, 15), np.float32)
    kernel[7, :] = 1 / 15
    moved = signals(cv2.filter2D(rectangles(), -1, kernel))
    isotropic = signals(cv2.GaussianBlur(rectangles(), (0, 0), 2.0))
    sharp = signals(rectangles())
    assert moved["motion_blur"] > 1.5  # a 15 px streak: box sigma 4.3 along x, sharp along y
    assert isotropic["motion_blur"] < 0.1 and sharp["motion_blur"] < 0.1


def test_contrast_exposure_and_highlights_on_ramps():
    ramp = np.repeat(np.tile(np.arange(256, dtype=np.uint8), (256, 2))[..., None], 3, axis=2)
    s = signals(ramp)
    assert s["contrast"] == pytest.approx(252 / 255, abs=0.01)  # p99 - p1 of a uniform ramp
    assert s["brightness"] == pytest.approx(0.5, abs=0.01)
    assert s["white_point"] == pytest.approx(253 / 255, abs=0.01)
    assert s["clipped_highlights"] == pytest.approx(6 / 256, abs=0.005)  # levels 250..255
    squashed = (100 + ramp.astype(np.float32) * 55 / 255).round().astype(np.uint8)
    assert signals(squashed)["contrast"] == pytest.approx(54 / 255, abs=0.01)
    dark = (ramp.astype(np.float32) * 0.4).round().astype(np.uint8)
    assert signals(dark)["white_point"] == pytest.approx(0.4, abs=0.01)


def test_colour_signals_on_known_colours():
    grey = np.full((512, 512, 3), 90, np.uint8)
    s = signals(grey)
    assert s["colourfulness"] == 0.0 and s["saturation"] == 0.0 and s["clipped_colour"] == 0.0
    half = grey.copy()
    half[:, :256] = (255, 0, 0)  # pure red: clipped and fully chromatic
    s = signals(half)
    assert s["clipped_colour"] == pytest.approx(0.5)
    assert s["saturation"] == pytest.approx(0.5)
    f = half.astype(np.float64)
    rg, yb = f[..., 0] - f[..., 1], (f[..., 0] + f[..., 1]) / 2 - f[..., 2]
    expected = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    assert s["colourfulness"] == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("sigma", [3.0, 6.0, 12.0])
def test_noise_estimates_per_channel_sigma(sigma):
    rng = np.random.default_rng(1)
    img = np.clip(np.round(smooth_field() + rng.normal(0, sigma, (512, 512, 3))), 0, 255).astype(np.uint8)
    # the 10th percentile of block estimates sits a little under sigma: within 15%
    assert signals(img)["noise"] == pytest.approx(sigma, rel=0.15)


def test_noise_is_colour_noise_so_grey_texture_reads_clean():
    rng = np.random.default_rng(2)
    grain = rng.normal(0, 10, (512, 512, 1))
    img = np.clip(np.round(128 + np.repeat(grain, 3, axis=2)), 0, 255).astype(np.uint8)
    assert signals(img)["noise"] < 0.5  # by design: see chroma_noise's docstring
    assert signals(smooth_field())["noise"] < 0.5


def test_latent_grid_finds_an_8px_lattice_and_only_that():
    base = smooth_field(1024)
    rng = np.random.default_rng(3)
    cells = rng.normal(0, 3, (128, 128, 1))
    grid = np.repeat(np.repeat(cells, 8, axis=0), 8, axis=1)
    with_grid = np.clip(base + grid, 0, 255).astype(np.uint8)
    cells7 = rng.normal(0, 3, (147, 147, 1))
    grid7 = np.repeat(np.repeat(cells7, 7, axis=0), 7, axis=1)[:1024, :1024]
    with_grid7 = np.clip(base + grid7, 0, 255).astype(np.uint8)
    threshold = next(r.threshold for r in CHECKS["latent_grid"].rules if r.metric == "latent_grid")
    assert signals(base)["latent_grid"] < 3
    assert signals(with_grid)["latent_grid"] > 10 * threshold
    assert signals(with_grid7)["latent_grid"] < threshold


def test_seam_finds_a_straight_step_on_the_latent_lattice():
    base = smooth_field(768).astype(np.float32)
    on = base.copy()
    on[:, 384:] += 8  # a tile boundary at a multiple of 8
    off = base.copy()
    off[:, 387:] += 8
    assert signals(on.astype(np.uint8))["seam"] > 0.9
    assert signals(off.astype(np.uint8))["seam"] < 0.3
    assert signals(base.astype(np.uint8))["seam"] < 0.3


def test_duplication_sees_tiles_not_texture():
    rng = np.random.default_rng(4)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (512, 512, 3)).astype(np.uint8), (0, 0), 1.5)
    tiled = np.tile(cv2.resize(texture, (256, 256), interpolation=cv2.INTER_AREA), (2, 2, 1))
    assert signals(texture)["duplication"] < 0.2
    assert signals(tiled)["duplication"] > 0.95


def test_block_coded_files_skip_the_lattice_metrics():
    img = rectangles()
    got = metric_values(img, ["latent_grid", "seam", "blur"], fmt="JPEG")
    assert isinstance(got["latent_grid"], Missing) and "JPEG" in got["latent_grid"].reason
    assert isinstance(got["seam"], Missing)
    assert isinstance(got["blur"], float)
    rule = next(r for r in CHECKS["latent_grid"].rules if r.metric == "latent_grid")
    assert rule.on_missing == "ignore"  # a JPEG is not failed for it


def test_tiny_image_gives_missing_not_a_crash():
    # resolution-independent signals upscale it to the analysis size; the lattice needs pixels
    got = metric_values(np.full((16, 16, 3), 100, np.uint8), ["latent_grid", "noise", "blur"])
    assert isinstance(got["latent_grid"], Missing)
    assert got["noise"] == 0.0 and isinstance(got["blur"], float)


# -- size invariance ---------------------------------------------------------------------------
#: |value at 1024 - value at 512| allowed for the same photo (1024 = a 2x bicubic upscale)
SIZE_TOLERANCE = {
    "blur": 0.1, "motion_blur": 0.05, "contrast": 0.02, "brightness": 0.01, "white_point": 0.02,
    "saturation": 0.01, "clipped_colour": 0.005, "clipped_highlights": 0.005, "noise": 0.5,
    "seam": 0.1, "duplication": 0.02,
}


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
def test_same_photo_at_512_and_1024_scores_alike(name):
    small = photo(name, 512)
    big = cv2.resize(small, (small.shape[1] * 2, small.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
    a, b = signals(small), signals(big)
    for key, tol in SIZE_TOLERANCE.items():
        assert abs(a[key] - b[key]) <= tol, (key, a[key], b[key])
    assert b["colourfulness"] == pytest.approx(a["colourfulness"], rel=0.02)
    assert a["latent_grid"] < 3 and b["latent_grid"] < 3  # a ratio near 1: both read "no grid"
    # the folk Laplacian variance moves by up to 40% (why the blur check does not use it)
    assert b["laplacian_var"] == pytest.approx(a["laplacian_var"], rel=0.4)


# -- checks at the shipped thresholds ----------------------------------------------------------
@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket"])
@pytest.mark.parametrize("short", [512, 1024])
def test_clean_photos_pass_every_artifact_check(name, short):
    assert fired_checks(photo(name, short)) == set()


def _defects(img: np.ndarray) -> dict[str, np.ndarray]:
    f = img.astype(np.float32)
    rng = np.random.default_rng(5)
    luma = (f @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    lin = (f / 255) ** 2.2
    h, w = img.shape[:2]
    cells = np.repeat(np.repeat(rng.normal(0, 3, (h // 8 + 1, w // 8 + 1, 1)), 8, 0), 8, 1)[:h, :w]
    half = img[:, : w // 2]
    return {
        "blur": cv2.GaussianBlur(img, (0, 0), 2.5),
        "low_contrast": np.clip(f.mean() + 0.3 * (f - f.mean()), 0, 255).astype(np.uint8),
        "exposure": np.clip(255 * (lin * 0.2) ** (1 / 2.2), 0, 255).astype(np.uint8),
        "oversaturation": np.clip(luma + 2.5 * (f - luma), 0, 255).astype(np.uint8),
        "noise": np.clip(f + rng.normal(0, 10, f.shape), 0, 255).astype(np.uint8),
        "latent_grid": np.clip(f + cells, 0, 255).astype(np.uint8),
        "duplication": np.concatenate([half, half], axis=1),
    }


@pytest.mark.parametrize("check", ARTIFACT_CHECKS)
def test_each_defect_fires_its_check(check):
    img = _defects(photo("astronaut", 512))[check]
    assert check in fired_checks(img)
