"""LPIPS metrics: distance to a paired reference (per image) and diversity within prompt groups.

* ``lpips_ref`` (kind ``pair``): LPIPS between an image and its reference; < 0.5 is the usual
  "close to the reference" bar (img2img, inpainting, regression against a golden set).
* ``lpips_diversity`` (kind ``group``): mean pairwise LPIPS between the seeds of each prompt
  (group = manifest ``group``, else the prompt), averaged over groups. Low means mode collapse:
  different seeds giving nearly the same picture.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from sdeval.features.lpips_features import OPTION_NAMES, TRUNK_OPTION_NAMES, LpipsTrunk
from sdeval.metrics.base import FeatureBatch, GroupMetric, GroupValue, Missing, PairMetric, Score

#: groups listed in the summary, lowest diversity first
LOWEST_GROUPS = 20


class LpipsRef(PairMetric):
    name: ClassVar[str] = "lpips_ref"
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


class LpipsDiversity(GroupMetric):
    name: ClassVar[str] = "lpips_diversity"
    feature: ClassVar[str] = "lpips_trunk"
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float | None, float | None]] = (0.0, None)
    unit: ClassVar[str] = "LPIPS"
    description: ClassVar[str] = ("mean pairwise LPIPS between seeds of each prompt group, averaged over "
                                  "groups; low = mode collapse")
    option_names: ClassVar[tuple[str, ...]] = TRUNK_OPTION_NAMES + ("lpips_max_group", "lpips_seed")

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        #: groups larger than this use a seeded sample of that many images (bounds memory and time)
        self.max_group = int(self.options.get("lpips_max_group") or 64)
        self.seed = int(self.options.get("lpips_seed") or 0)
        self._trunk: LpipsTrunk | None = None

    def trunk(self) -> LpipsTrunk:
        if self._trunk is None:
            self._trunk = LpipsTrunk(self.options)
        return self._trunk

    def feature_extractors(self) -> Sequence[LpipsTrunk]:
        return [self.trunk()]

    def group_cache_key(self) -> str | None:
        """Group values are cached by their members' content (see ``LpipsTrunk.cache_key``)."""
        return f"{self.name}/group/v{self.version}/{self.trunk().identity_key()}/max{self.max_group}/seed{self.seed}"

    def select(self, key: str, members: Sequence[str]) -> tuple[list[str], bool]:
        if len(members) <= self.max_group:
            return list(members), False
        rng = np.random.default_rng([self.seed, int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)])
        return [members[i] for i in sorted(rng.choice(len(members), self.max_group, replace=False))], True

    def group_value(self, key: str, features: Sequence[Any], errors: int, sampled: bool) -> GroupValue:
        n = len(features)
        if n < 2:
            return GroupValue(key, n, 0, None, sampled, errors)
        mean, pairs = self.trunk().mean_pairwise(features)
        return GroupValue(key, n, pairs, mean, sampled, errors)

    def summarize(self, groups: Sequence[GroupValue], counts: Mapping[str, int]) -> dict[str, Any]:
        scored = sorted((g for g in groups if g.mean is not None), key=lambda g: g.key)
        warnings = []
        if not scored:
            warnings.append("lpips_diversity: no prompt group has 2 or more readable images (group = manifest "
                            "'group', else the prompt)")
        if counts.get("ungrouped"):
            warnings.append(f"lpips_diversity: {counts['ungrouped']} image(s) without a group or prompt were left out")
        value = sum(g.mean for g in scored if g.mean is not None) / len(scored) if scored else None
        lowest = sorted(scored, key=lambda g: g.mean if g.mean is not None else 0.0)[:LOWEST_GROUPS]
        return {"value": value, "groups": len(scored), "singletons": counts.get("singletons", 0),
                "images": sum(g.images for g in scored), "pairs": sum(g.pairs for g in scored),
                "sampled_groups": sum(1 for g in scored if g.sampled),
                "lowest_groups": [{"group": g.key, "images": g.images, "mean": g.mean} for g in lowest],
                "averaging": "mean over groups of each group's mean pairwise LPIPS", "warnings": warnings}

    def protocol(self) -> dict[str, Any]:
        trunk = self.trunk()
        return {**super().protocol(), "id": "lpips_diversity", **trunk.lpips_identity(), "device": trunk.device(),
                "feature": trunk.id, "feature_version": trunk.version,
                "pairs": "all pairs within a group", "max_group": self.max_group, "seed": self.seed}
