"""Artifact signals on the shapes real generator outputs have and photos rarely do: flat white
backdrops, door frames and other straight full-height edges. Images are built here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sdeval.features import artifacts as A
from sdeval.gates.checks import CHECKS


def threshold(check: str, metric: str) -> float:
    return next(r.threshold for r in CHECKS[check].rules if r.metric == metric)


def smooth_field(n: int = 512, seed: int = 0, lo: float = 30, hi: float = 225) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = cv2.GaussianBlur(rng.normal(0, 1, (n, n, 3)).astype(np.float32), (0, 0), n / 40)
    f = (f - f.min()) / (f.max() - f.min())
    return np.clip(lo + (hi - lo) * f, 0, 255).astype(np.uint8)


def on_white_backdrop(n: int = 512) -> np.ndarray:
    """A textured subject (a disc of smooth colour with a few hard details) on flat white: the
    product-shot / sticker / pixel-art look."""
    img = np.full((n, n, 3), 255, np.uint8)
    subject = smooth_field(n, seed=1)
    yy, xx = np.mgrid[:n, :n]
    disc = (yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (0.3 * n) ** 2
    img[disc] = subject[disc]
    return img


def test_clipped_fraction_counts_a_backdrop_blown_highlights_does_not():
    s = A.compute_signals(on_white_backdrop())
    assert s["clipped_highlights"] > 0.6  # what the old rule thresholded (> 0.075 fired)
    assert s["blown_highlights"] < 0.01
    assert s["blown_highlights"] < threshold("exposure", "blown_highlights")


def test_a_blown_subject_counts_even_on_a_white_backdrop():
    img = on_white_backdrop().astype(np.float32)
    n = img.shape[0]
    yy, xx = np.mgrid[:n, :n]
    disc = (yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (0.3 * n) ** 2
    # the subject overexposed the way warm skin or a sunset clips: red and green blow, blue holds.
    # (Where a blown subject turns neutral white and touches the backdrop, it merges with it and
    # is left out too: docs/checks.md.)
    img[disc] = np.clip(img[disc] * np.array([2.2, 1.8, 0.6], np.float32), 0, 255)
    img = img.astype(np.uint8)
    blown_in_subject = float(np.count_nonzero(disc & (img.max(axis=2) >= 250))) / disc.size
    assert blown_in_subject > 0.05
    s = A.compute_signals(img)
    # every clipped pixel of the subject counts, none of the backdrop's
    assert s["blown_highlights"] == pytest.approx(blown_in_subject, abs=0.005)


def test_neutral_white_inside_the_picture_is_not_a_backdrop():
    """A white region that does not touch the border (a blown face, a white shirt) counts."""
    img = smooth_field(512, seed=2, lo=40, hi=160)
    img[128:384, 128:384] = 255
    s = A.compute_signals(img)
    assert s["blown_highlights"] == pytest.approx(s["clipped_highlights"], abs=1e-6)
    assert s["blown_highlights"] > threshold("exposure", "blown_highlights")


def test_small_white_border_region_is_not_a_backdrop():
    """Below a tenth of the image, a white region at the border is counted (a blown window)."""
    img = smooth_field(512, seed=3, lo=40, hi=160)
    img[:100, :200] = 255  # 7.6 % of the image
    s = A.compute_signals(img)
    assert s["blown_highlights"] == pytest.approx(s["clipped_highlights"], abs=1e-6)


def test_overexposed_photo_still_fires_exposure():
    from skimage import data as skdata

    img = cv2.resize(skdata.astronaut(), (512, 512), interpolation=cv2.INTER_AREA).astype(np.float32)
    lin = (img / 255.0) ** 2.2 * 4.0  # +2 EV
    over = np.clip(255 * np.clip(lin, 0, 1) ** (1 / 2.2), 0, 255).astype(np.uint8)
    assert A.compute_signals(over)["blown_highlights"] > threshold("exposure", "blown_highlights")


def door_frames(n: int = 768, columns: tuple[int, ...] = (203, 400, 589)) -> np.ndarray:
    """Straight full-height dark bars on a smooth field (door and window frames); column 400 is
    on the 8-px lattice."""
    img = smooth_field(n, seed=4).astype(np.float32)
    for c in columns:
        img[:, c:c + 12] *= 0.3
    return img.astype(np.uint8)


def test_tile_seam_ignores_straight_edges_that_also_sit_off_the_lattice():
    s = A.compute_signals(door_frames())
    assert s["seam"] > 0.9  # the lattice-only statistic sees the frame at column 400 as a seam
    assert s["tile_seam"] < threshold("latent_grid", "tile_seam")


def test_tile_seam_finds_a_tiling_step_on_a_smooth_image():
    base = smooth_field(768, seed=5).astype(np.float32)
    base[:, 384:] += 8
    base[384:, :] -= 6
    s = A.compute_signals(np.clip(base, 0, 255).astype(np.uint8))
    assert s["tile_seam"] > threshold("latent_grid", "tile_seam")


def test_seam_value_unchanged_by_the_rewrite():
    """``seam`` is the same statistic as before (lattice columns only): a step off the lattice
    reads low, one on it high."""
    base = smooth_field(768, seed=6).astype(np.float32)
    on, off = base.copy(), base.copy()
    on[:, 384:] += 8
    off[:, 387:] += 8
    assert A.seam_signal(cv2.cvtColor(on.astype(np.uint8), cv2.COLOR_RGB2GRAY)) > 0.9
    assert A.seam_signal(cv2.cvtColor(off.astype(np.uint8), cv2.COLOR_RGB2GRAY)) < 0.3
