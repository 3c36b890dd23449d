"""Size checks: the size asked for vs the size delivered, and the latent grid (multiple of 8)."""

from __future__ import annotations

import re

from sdeval.core.errors import UsageError
from sdeval.metrics.base import FeatureBatch, ImageMetric, Missing, Score

_SIZE_RE = re.compile(r"^\s*(\d{1,9})\s*[xX×]\s*(\d{1,9})\s*$")
#: the largest side a size may claim; metadata from any file can say anything (1 followed by 400 zeros)
MAX_SIDE = 1 << 20


def parse_size(text: str) -> tuple[int, int]:
    m = _SIZE_RE.match(str(text))
    if not m:
        raise UsageError(f"resolution must look like 1024x1024, got {str(text)[:40]!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise UsageError(f"resolution {w}x{h} is out of range (each side 1..{MAX_SIDE})")
    return w, h


def _plausible(size: tuple[object, object]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIDE for v in size)


class SizeError(ImageMetric):
    """How far the delivered size is from the expected one, in pixels (0 = exact).

    The expected size is ``--resolution`` when given, else the metadata's *output* size
    (``output_width``/``output_height``): what the generator's saved image should measure, hires
    fix and upscales included (A1111 ``Hires upscale``/``Hires resize``, ComfyUI latent/image
    upscale nodes), or a manifest's width/height. The base generation size (``width``/``height``)
    is never used: for a hires-fixed image it is the first-pass size, and comparing against it
    would block every such image. Where the readers cannot tell the output size (a model upscaler,
    a loaded image, an unknown node) the score is Missing, not a guess.
    """

    name = "size_error"
    #: 2: compares against the output size (hires fix included), no longer the base size
    version = "2"
    higher_is_better = False
    range = (0.0, None)
    unit = "pixels"
    default_action = "block"
    option_names = ("resolution",)
    description = ("largest difference in pixels between the actual width/height and the expected "
                   "size (--resolution, else the output size the generator's metadata implies, "
                   "hires fix and upscales included)")

    def __init__(self, options=None) -> None:
        super().__init__(options)
        res = self.options.get("resolution")
        self.expected = parse_size(res) if res else None

    def compute(self, batch: FeatureBatch) -> list[Score]:
        out: list[Score] = []
        for rec in batch.records:
            want = self.expected
            meta = rec.metadata
            if want is None and meta.output_width and meta.output_height:
                want = (meta.output_width, meta.output_height)
            if want is None:
                out.append(Missing("no requested size (the metadata does not say the output "
                                   "size and no --resolution)"))
            elif not _plausible(want):
                out.append(Missing(f"the metadata's requested size is out of range (each side 1..{MAX_SIDE})"))
            elif rec.width is None or rec.height is None:
                out.append(Missing("image size unknown"))
            else:
                out.append(float(max(abs(rec.width - want[0]), abs(rec.height - want[1]))))
        return out


class SizeMod8(ImageMetric):
    """The latent grid: a decoded latent is a multiple of 8 pixels on each side.

    An image resized in pixel space after its last decode (ComfyUI ``ImageScale`` to a fixed
    size after a model upscaler, ``ImageScaleBy``...) is not on that grid by design: the score is
    Missing then, and ``size_error`` checks the size against the one the graph states.
    """

    name = "size_mod8"
    #: 2: Missing for images resized in pixel space after decoding (metadata ``output_resized``)
    version = "2"
    higher_is_better = False
    range = (0.0, 7.0)
    unit = "pixels"
    default_action = "block"
    description = ("largest remainder of width/height modulo 8 (latent images are multiples of 8; "
                   "not scored for images the graph resizes in pixel space after decoding)")

    def compute(self, batch: FeatureBatch) -> list[Score]:
        out: list[Score] = []
        for r in batch.records:
            if r.width is None or r.height is None:
                out.append(Missing("image size unknown"))
            elif r.metadata.output_resized:
                out.append(Missing("the graph resizes the image in pixel space after decoding; "
                                   "the latent grid does not apply (size_error checks the size)"))
            else:
                out.append(float(max(r.width % 8, r.height % 8)))
        return out
