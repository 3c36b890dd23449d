"""The model: the checkpoint or UNet a sampler's ``model`` input comes from."""

from __future__ import annotations

from sdeval.inputs.metadata._common import as_str
from sdeval.inputs.metadata.comfyui.values import MAX_DEPTH, GraphValues

#: loader inputs that name the model file.
LOADER_INPUTS = ("ckpt_name", "unet_name")


def _loader_name(g: GraphValues, nid: str) -> str | None:
    for key in LOADER_INPUTS:
        name = as_str(g.value(nid, key)[0])
        if name:
            return name
    return None


def model_name(g: GraphValues, start: str) -> str | None:
    """The checkpoint/UNet name reached through ``model`` links from ``start`` (LoRA loaders in
    between; a guider's model for custom samplers), else the first loader in execution order."""
    nid: str | None = start
    guider = g.linked_node(start, "guider")
    if guider is not None and "model" in g.inputs(guider):
        nid = guider
    seen: set[str] = set()
    while nid is not None and nid not in seen and len(seen) < MAX_DEPTH:
        seen.add(nid)
        name = _loader_name(g, nid)
        if name:
            return name
        nid = g.linked_node(nid, "model")
    for nid in g.order:
        name = _loader_name(g, nid)
        if name:
            return name
    return None
