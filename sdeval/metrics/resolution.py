"""Size checks: the size asked for vs the size delivered, and the latent grid (multiple of 8)."""

from __future__ import annotations

import re

from sdeval.errors import UsageError
from sdeval.metrics.base import FeatureBatch, ImageMetric, Missing, Score

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    m = _SIZE_RE.match(str(text))
    if not m:
        raise UsageError(f"resolution must look like 1024x1024, got {text!r}")
    return int(m.group(1)), int(m.group(2))


class SizeError(ImageMetric):
    name = "size_error"
    higher_is_better = False
    range = (0.0, None)
    unit = "pixels"
    default_action = "block"
    option_names = ("resolution",)
    description = ("largest difference in pixels between the actual width/height and the requested "
                   "size (--resolution, else the generator's metadata)")

    def __init__(self, options=None) -> None:
        super().__init__(options)
        res = self.options.get("resolution")
        self.expected = parse_size(res) if res else None

    def compute(self, batch: FeatureBatch) -> list[Score]:
        out: list[Score] = []
        for rec in batch.records:
            want = self.expected
            if want is None and rec.metadata.width and rec.metadata.height:
                want = (rec.metadata.width, rec.metadata.height)
            if want is None:
                out.append(Missing("no requested size (no metadata size and no --resolution)"))
            elif rec.width is None or rec.height is None:
                out.append(Missing("image size unknown"))
            else:
                out.append(float(max(abs(rec.width - want[0]), abs(rec.height - want[1]))))
        return out


class SizeMod8(ImageMetric):
    name = "size_mod8"
    higher_is_better = False
    range = (0.0, 7.0)
    unit = "pixels"
    default_action = "block"
    description = "largest remainder of width/height modulo 8 (latent images are multiples of 8)"

    def compute(self, batch: FeatureBatch) -> list[Score]:
        return [Missing("image size unknown") if r.width is None or r.height is None
                else float(max(r.width % 8, r.height % 8)) for r in batch.records]
