"""Face metrics (``sdeval[faces]``): how many faces, how big, how sharp, how sure.

They read ``face_signals`` (OpenCV's Haar frontal-face cascade, :mod:`sdeval.features.faces`).
A bad face is what face restoration fixes, so rules on these default to ``restore_face``. Without
OpenCV < 5 the extractor's ``check_available`` raises :class:`MetricUnavailableError` naming
``pip install 'sdeval[faces]'``.
"""

from __future__ import annotations

from typing import ClassVar

from sdeval.features.faces import FaceInfo, largest
from sdeval.metrics.base import FeatureBatch, ImageMetric, Missing, Score

FEATURE = "face_signals"


class _FaceMetric(ImageMetric):
    requires: ClassVar[tuple[str, ...]] = (FEATURE,)
    default_action: ClassVar[str] = "restore_face"

    def value(self, info: FaceInfo) -> Score:
        raise NotImplementedError

    def compute(self, batch: FeatureBatch) -> list[Score]:
        out: list[Score] = []
        for info in batch[FEATURE]:
            out.append(info if isinstance(info, Missing) else self.value(info))
        return out


class FaceCount(_FaceMetric):
    name: ClassVar[str] = "face_count"
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, None)
    unit: ClassVar[str] = "faces"
    description: ClassVar[str] = (
        "frontal faces found by OpenCV's Haar cascade, at least 8% of the short side "
        "(background faces are not counted)")

    def value(self, info: FaceInfo) -> Score:
        return float(len(info.get("faces") or []))


class FaceSize(_FaceMetric):
    name: ClassVar[str] = "face_size"
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float | None, float | None]] = (0.0, 1.0)
    unit: ClassVar[str] = "fraction of the image area"
    description: ClassVar[str] = (
        "area of the largest face box over the image area (0 when there is no face); a Haar box "
        "spans brows to mouth, so a head-and-shoulders portrait scores ~0.03-0.15")

    def value(self, info: FaceInfo) -> Score:
        face = largest(info)
        if face is None:
            return 0.0
        return float(face["w"] * face["h"]) / float(max(1, info["width"] * info["height"]))


class FaceSharpness(_FaceMetric):
    name: ClassVar[str] = "face_sharpness"
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float | None, float | None]] = (0.0, None)
    unit: ClassVar[str] = "grey levels^2 (face box at 128 px)"
    description: ClassVar[str] = (
        "variance of the Laplacian inside the largest face box, resized to 128 px so that big "
        "and small faces compare")

    def value(self, info: FaceInfo) -> Score:
        face = largest(info)
        return Missing("no face found") if face is None else float(face["sharpness"])


class FaceConfidence(_FaceMetric):
    name: ClassVar[str] = "face_confidence"
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float | None, float | None]] = (None, None)
    unit: ClassVar[str] = "cascade level weight"
    description: ClassVar[str] = (
        "the Haar cascade's last-stage score for the largest face (detectMultiScale3 level "
        "weight): a confidence proxy, not a probability; clear frontal faces score ~4-8")

    def value(self, info: FaceInfo) -> Score:
        face = largest(info)
        return Missing("no face found") if face is None else float(face["confidence"])
