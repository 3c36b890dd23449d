"""LPIPS metrics: distance to a paired reference (per image) and diversity within prompt groups.

* ``lpips_ref`` (kind ``pair``): LPIPS between an image and its reference; < 0.5 is the usual
  "close to the reference" bar (img2img, inpainting, regression against a golden set).
* ``lpips_diversity`` (kind ``set``): mean pairwise LPIPS between the seeds of each prompt
  (group = manifest ``group``, else the prompt), averaged over groups. Low means mode collapse:
  different seeds giving nearly the same picture.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from sdeval.features.lpips_features import OPTION_NAMES
from sdeval.metrics.base import FeatureBatch, ImageMetric, Missing, Score
from sdeval.metrics.set_base import SetMetric


class LpipsRef(ImageMetric):
    name: ClassVar[str] = "lpips_ref"
    kind: ClassVar[str] = "pair"
    requires: ClassVar[tuple[str, ...]] = ("lpips_ref_pair",)
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, None)
    unit: ClassVar[str] = "LPIPS"
    description: ClassVar[str] = "LPIPS to the paired reference image (same name under --ref); < 0.5 is close"
    option_names: ClassVar[tuple[str, ...]] = OPTION_NAMES

    def compute(self, batch: FeatureBatch) -> list[Score]:
        out: list[Score] = []
        for v in batch["lpips_ref_pair"]:
            out.append(v if isinstance(v, (float, Missing)) else Missing("no LPIPS value"))
        return out

    def protocol(self) -> dict[str, Any]:
        proto = super().protocol()
        ex = self.feature_extractors()[0]
        proto.update(ex.lpips_identity())
        return proto


class LpipsDiversity(SetMetric):
    name: ClassVar[str] = "lpips_diversity"
    feature: ClassVar[str] = ""
    keeps: ClassVar[tuple[str, ...]] = ()
    needs_reference: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float | None, float | None]] = (0.0, None)
    unit: ClassVar[str] = "LPIPS"
    description: ClassVar[str] = ("mean pairwise LPIPS between seeds of each prompt group, averaged over "
                                  "groups; low = mode collapse")
    option_names: ClassVar[tuple[str, ...]] = ("lpips_net", "lpips_size", "lpips_max_group", "lpips_seed")

    def feature_extractors(self) -> Sequence[Any]:
        return []

    def runner(self) -> Any:
        from sdeval.features.lpips_features import LpipsDiversityRunner

        return LpipsDiversityRunner(self.options)
