"""Pixel-level metrics behind the ``blank`` check."""

from __future__ import annotations

from sdeval.metrics.base import FeatureBatch, ImageMetric, Score


class PixelStd(ImageMetric):
    name = "pixel_std"
    requires = ("pixel_stats",)
    higher_is_better = True
    range = (0.0, 127.5)
    unit = "luma levels (0-255)"
    description = "standard deviation of Rec.601 luma; near 0 for constant (blank) frames"

    def compute(self, batch: FeatureBatch) -> list[Score]:
        return [f["luma_std"] for f in batch["pixel_stats"]]


class PixelMax(ImageMetric):
    name = "pixel_max"
    requires = ("pixel_stats",)
    higher_is_better = True
    range = (0.0, 255.0)
    unit = "levels (0-255)"
    description = "brightest channel value; below 8 the frame is black (NaN VAE decode, safety blackout)"

    def compute(self, batch: FeatureBatch) -> list[Score]:
        return [f["max"] for f in batch["pixel_stats"]]
