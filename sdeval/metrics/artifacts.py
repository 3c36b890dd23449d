"""Artifact metrics: one number per image per failure a new seed fixes.

All read the ``artifact_signals`` feature (:mod:`sdeval.features.artifacts`), computed once per
image in the decode threads, at a 512 px analysis short side unless stated. The checks built on
them (``--check artifacts``), with calibrated thresholds and measured accuracy, are in
:mod:`sdeval.gates.checks`, ``docs/checks.md`` and ``benchmarks/artifacts/``.
"""

from __future__ import annotations

import math
from typing import ClassVar

from sdeval.metrics.base import FeatureBatch, ImageMetric, Missing, Score

FEATURE = "artifact_signals"
#: formats whose own 8x8 (JPEG) or 4x4/16x16 (lossy WebP) blocks form the lattice the
#: latent-grid and seam metrics look for: those two are not computed for such files
BLOCK_CODED_FORMATS = frozenset({"JPEG", "MPO", "WEBP"})


class _SignalMetric(ImageMetric):
    """A metric that is one entry of the ``artifact_signals`` dict."""

    requires: ClassVar[tuple[str, ...]] = (FEATURE,)
    default_action: ClassVar[str] = "reseed"
    #: the key in the signal dict (defaults to the metric name)
    signal: ClassVar[str] = ""
    #: skip images stored in a block-coded format (their blocks look like a latent grid)
    skip_block_coded: ClassVar[bool] = False

    def compute(self, batch: FeatureBatch) -> list[Score]:
        key = self.signal or self.name
        out: list[Score] = []
        for record, signals in zip(batch.records, batch[FEATURE]):
            if isinstance(signals, Missing):
                out.append(signals)
                continue
            fmt = (record.format or "").upper()
            if self.skip_block_coded and fmt in BLOCK_CODED_FORMATS:
                out.append(Missing(f"{fmt} file: its compression blocks form the same 8-px lattice, "
                                   f"so {self.name} is not measured"))
                continue
            value = signals.get(key) if isinstance(signals, dict) else None
            if value is None or not math.isfinite(float(value)):
                out.append(Missing(f"{self.name} could not be measured (image too small?)"))
            else:
                out.append(float(value))
        return out


class LaplacianVariance(_SignalMetric):
    name: ClassVar[str] = "laplacian_var"
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float | None, float | None]] = (0.0, None)
    unit: ClassVar[str] = "grey levels^2 (512 px analysis)"
    description: ClassVar[str] = (
        "variance of the Laplacian, the folk sharpness number (~100 at 512 px is the usual cut); "
        "depends on contrast and content: the blur check uses 'blur' instead")
    aliases: ClassVar[tuple[str, ...]] = ("sharpness",)


class Blur(_SignalMetric):
    name: ClassVar[str] = "blur"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 10.0)
    unit: ClassVar[str] = "px (Gaussian sigma at 512 px)"
    description: ClassVar[str] = (
        "estimated width of the image's edges along its blurriest direction, from gradient energy "
        "before and after a known extra blur; independent of contrast and exposure")


class MotionBlur(_SignalMetric):
    name: ClassVar[str] = "motion_blur"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 10.0)
    unit: ClassVar[str] = "px (512 px analysis)"
    description: ClassVar[str] = (
        "edge width along the blurriest direction minus along the sharpest: motion blur smears "
        "one direction only")


class Contrast(_SignalMetric):
    name: ClassVar[str] = "contrast"
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 1.0)
    unit: ClassVar[str] = "fraction of the 0-255 range"
    description: ClassVar[str] = "1st-to-99th percentile range of luma (washed-out images are narrow)"


class Brightness(_SignalMetric):
    name: ClassVar[str] = "brightness"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 1.0)
    unit: ClassVar[str] = "mean luma / 255"
    description: ClassVar[str] = "mean luma; very high means washed-out overexposure"


class WhitePoint(_SignalMetric):
    name: ClassVar[str] = "white_point"
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 1.0)
    unit: ClassVar[str] = "99th percentile luma / 255"
    description: ClassVar[str] = (
        "how bright the brightest 1% of the image gets: an underexposed image never comes near "
        "white, while a night scene keeps its lights")


class ClippedHighlights(_SignalMetric):
    name: ClassVar[str] = "clipped_highlights"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 1.0)
    unit: ClassVar[str] = "fraction of pixels"
    description: ClassVar[str] = (
        "pixels with a channel at 250 or above; informative, not thresholded: a flat white or "
        "bright background is style, not lost detail (the exposure check uses blown_highlights)")


class BlownHighlights(_SignalMetric):
    name: ClassVar[str] = "blown_highlights"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 1.0)
    unit: ClassVar[str] = "fraction of pixels"
    description: ClassVar[str] = (
        "pixels with a channel at 250 or above, not counting a white backdrop (a neutral-white "
        "region touching the border and covering >= 10% of the image): blown highlights inside "
        "the picture, not a white-background style")


class Colourfulness(_SignalMetric):
    name: ClassVar[str] = "colourfulness"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, None)
    unit: ClassVar[str] = "Hasler-Suesstrunk M (0-255 scale)"
    description: ClassVar[str] = (
        "Hasler & Suesstrunk colourfulness: ~0 grey, 33 moderately, 59 quite, 109 extremely "
        "colourful; informative, not thresholded (photos vary too much)")
    aliases: ClassVar[tuple[str, ...]] = ("colorfulness",)


class Saturation(_SignalMetric):
    name: ClassVar[str] = "saturation"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 1.0)
    unit: ClassVar[str] = "mean HSV saturation"
    description: ClassVar[str] = "mean HSV saturation; informative, not thresholded"


class ClippedColour(_SignalMetric):
    name: ClassVar[str] = "clipped_colour"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 1.0)
    unit: ClassVar[str] = "fraction of pixels"
    description: ClassVar[str] = (
        "pixels with a channel at 0 or 255 and chroma >= 64: colours pushed out of gamut, the "
        "burned look of a too-high CFG")
    aliases: ClassVar[tuple[str, ...]] = ("clipped_color",)


class Noise(_SignalMetric):
    name: ClassVar[str] = "noise"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, None)
    unit: ClassVar[str] = "8-bit levels (sigma at 512 px)"
    description: ClassVar[str] = (
        "colour-noise sigma: wavelet (Haar HH) estimate on the opponent-colour channels, from the "
        "flattest 10% of 16-px blocks; residual noise of too few sampling steps is colourful")


class LatentGrid(_SignalMetric):
    name: ClassVar[str] = "latent_grid"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, None)
    unit: ClassVar[str] = "power ratio (~1 = no lattice)"
    description: ClassVar[str] = (
        "power of the row/column edge profiles at the 8-px lattice harmonics over neighbouring "
        "frequencies, on original pixels; not measured for JPEG/WebP files (their blocks form the "
        "same lattice)")
    skip_block_coded: ClassVar[bool] = True


class Seam(_SignalMetric):
    name: ClassVar[str] = "seam"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 1.0)
    unit: ClassVar[str] = "fraction of lines (~0.14 by chance)"
    description: ClassVar[str] = (
        "largest fraction of rows (columns) in which one 8-px-lattice column (row) carries the "
        "local maximum step: a straight VAE tiling seam; not measured for JPEG/WebP files")
    skip_block_coded: ClassVar[bool] = True


class TileSeam(_SignalMetric):
    name: ClassVar[str] = "tile_seam"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 1.0)
    unit: ClassVar[str] = "fraction of lines"
    description: ClassVar[str] = (
        "how far the best 8-px-lattice column (row) of 'seam' beats the best column (row) off the "
        "lattice: door frames and panel borders are straight edges at any column, a VAE tiling "
        "seam only on the lattice; not measured for JPEG/WebP files")
    skip_block_coded: ClassVar[bool] = True


class Duplication(_SignalMetric):
    name: ClassVar[str] = "duplication"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 1.0)
    unit: ClassVar[str] = "normalised correlation"
    description: ClassVar[str] = (
        "highest self-correlation of the image's (whitened) edges at a shift of at least 1/8 of "
        "its size: 1.0 for exactly tiled content")
