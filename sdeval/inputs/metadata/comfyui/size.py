"""The generation size: the latent (or image) a sampler starts from, what a regeneration asks for.

Walked upstream from the primary sampler through its latent input, scaling by ``scale_by`` nodes
on the way, to the first node that states a width and a height. When the chain says nothing, the
one size every empty latent/image node agrees on stands in.
"""

from __future__ import annotations

import math

from sdeval.inputs.metadata._common import as_float, as_int
from sdeval.inputs.metadata.comfyui.values import MAX_DEPTH, GraphValues

#: inputs that carry the latent or image into a node, in the order they are tried.
LATENT_INPUTS = ("latent_image", "samples", "latent", "pixels", "image", "images")


def is_empty_latent(class_type: str) -> bool:
    """``EmptyLatentImage``, ``EmptySD3LatentImage``, ``EmptyFlux2LatentImage``..."""
    return class_type.startswith("Empty") and "Latent" in class_type


def latent_size(g: GraphValues, start: str, samplers: set[str]) -> tuple[int, int] | None:
    """The latent/image size entering ``start``, walking its latent chain upstream
    (``samplers``: the other samplers, whose own width/height inputs do not count)."""
    scale = 1.0
    nid: str | None = start
    seen: set[str] = set()
    while nid is not None and nid not in seen and len(seen) < MAX_DEPTH:
        seen.add(nid)
        w = as_int(g.value(nid, "width")[0] if "width" in g.inputs(nid)
                   else g.value(nid, "empty_latent_width")[0])  # Efficiency loaders
        h = as_int(g.value(nid, "height")[0] if "height" in g.inputs(nid)
                   else g.value(nid, "empty_latent_height")[0])
        if nid not in samplers and w and h and w > 0 and h > 0:
            sw, sh = w * scale, h * scale
            if not (math.isfinite(sw) and math.isfinite(sh)):
                return None  # absurd scale factors: no size rather than a crash
            return round(sw), round(sh)
        factor = as_float(g.value(nid, "scale_by")[0])
        if factor and factor > 0 and nid not in samplers:
            scale *= factor
        nid = next((src for n in LATENT_INPUTS if (src := g.linked_node(nid, n))), None)
    return None


def fallback_size(g: GraphValues) -> tuple[int, int] | None:
    """The one size all empty-latent/empty-image nodes agree on, when the chain gave none."""
    sizes = set()
    for nid in g.graph:
        ct = g.cls(nid)
        if ct == "EmptyImage" or is_empty_latent(ct):
            w = as_int(g.value(nid, "width")[0])
            h = as_int(g.value(nid, "height")[0])
            if w and h:
                sizes.add((w, h))
    return sizes.pop() if len(sizes) == 1 else None
