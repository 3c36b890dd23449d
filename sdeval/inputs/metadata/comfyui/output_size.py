"""The output size: what the image-saving node writes, replayed from the latent it came from.

Walked back from the saver through ImageScale(By), ImageScaleToTotalPixels, VAEDecode/Encode,
LatentUpscale(By) and size-keeping nodes to a node of known size, then replayed forward with
ComfyUI's own rounding. A step whose size the graph does not state (a model upscaler, a loaded
image, a crop, an unknown node) makes the output size unknown, with a warning that says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sdeval.formats.comfyui_graph import downstream, link, node_sort_key, output_nodes
from sdeval.inputs.metadata._common import as_float, as_int, as_str
from sdeval.inputs.metadata.comfyui.samplers import SAMPLER_SEED_INPUT
from sdeval.inputs.metadata.comfyui.size import LATENT_INPUTS, is_empty_latent
from sdeval.inputs.metadata.comfyui.values import MAX_DEPTH, GraphValues

#: image -> image nodes that keep the size of one input (the input named here).
IMAGE_SAME_SIZE: dict[str, str] = {
    "ImageAddNoise": "image", "ImageSharpen": "image", "ImageBlur": "image",
    "ImageInvert": "image", "ImageQuantize": "image", "ImageFlip": "image",
    "ImageFromBatch": "image", "RepeatImageBatch": "image",
    "ImageBatch": "image1",  # image2 is resized to image1
    "ImageBlend": "image1",  # image2 is resized to image1
    "ImageCompositeMasked": "destination",
}
#: latent -> latent nodes that keep the size of one input.
LATENT_SAME_SIZE: dict[str, str] = {
    "SetLatentNoiseMask": "samples", "RepeatLatentBatch": "samples",
    "LatentFromBatch": "samples", "LatentBatchSeedBehavior": "samples",
    "LatentFlip": "samples", "LatentMultiply": "samples",
    "LatentComposite": "samples_to", "LatentCompositeMasked": "destination",
    "LatentBlend": "samples1", "LatentAdd": "samples1", "LatentSubtract": "samples1",
    "LatentInterpolate": "samples1", "LatentBatch": "samples1",
}
VAE_DECODERS = frozenset({"VAEDecode", "VAEDecodeTiled"})
#: VAEEncode crops the pixels to a multiple of 8 (``vae_encode_crop_pixels``).
VAE_ENCODERS = frozenset({"VAEEncode", "VAEEncodeTiled", "VAEEncodeForInpaint"})
#: pixels per latent cell of empty-latent nodes; 8 unless listed (``height // 16`` for Flux 2).
LATENT_FACTOR = {"EmptyFlux2LatentImage": 16}
DEFAULT_LATENT_FACTOR = 8
#: Efficiency Nodes: loaders that make an empty latent of ``empty_latent_width``/``height``, and
#: samplers that decode their own output (an IMAGE output next to the LATENT one).
EFFICIENT_LOADERS = frozenset({"Efficient Loader", "Eff. Loader SDXL"})
EFFICIENT_SAMPLERS = frozenset({"KSampler (Efficient)", "KSampler Adv. (Efficient)",
                                "KSampler SDXL (Eff.)"})

#: omar92's quality-of-life suit: latent upscales by a factor -> its (width, height) inputs.
O_LATENT_FACTOR = {"LatentUpscaleFactor _O": ("WidthFactor", "HeightFactor"),
                   "LatentUpscaleFactorSimple _O": ("factor", "factor")}

#: (width, height, pixels per cell): a latent in cells, or an image (1 pixel per cell)
Source = tuple[int, int, int]


@dataclass(frozen=True)
class _Move:
    """What one node on the way back from the saver does: it states the size (``source``), or
    the walk goes on through its input ``follow`` (a latent when ``latent``) after recording
    ``step`` for the replay. ``follow`` None: the walk cannot go on (unless it is a Reroute)."""

    source: Source | None = None
    follow: str | None = None
    latent: bool = False
    step: tuple[Any, ...] | None = None


def _unknown(g: GraphValues, why: str) -> None:
    g.warn(f"comfyui: output size unknown: {why}")


def _number(g: GraphValues, nid: str, name: str, kind: type = int) -> float | int | None:
    value = g.value(nid, name)[0]
    number = as_int(value) if kind is int else as_float(value)
    if number is None:
        _unknown(g, f"{name} of node {nid} ({g.cls(nid)}) is not a number")
    return number


def _sides(g: GraphValues, nid: str) -> tuple[int | None, int | None]:
    """``width`` and ``height`` of a node; (None, None) with a warning when not both >= 0."""
    w, h = _number(g, nid, "width"), _number(g, nid, "height")
    if w is None or h is None:
        return None, None
    if w < 0 or h < 0:
        _unknown(g, f"node {nid} ({g.cls(nid)}) has a negative side")
        return None, None
    return int(w), int(h)


def _empty(g: GraphValues, nid: str, factor: int) -> _Move | None:
    """An empty latent or image of a stated size (a zero or missing side: unknown)."""
    w, h = _sides(g, nid)
    if not w or not h:
        if w == 0 or h == 0:
            _unknown(g, f"node {nid} ({g.cls(nid)}) has a zero side")
        return None
    return _Move(source=(w // factor, h // factor, factor))


def _latent_move(g: GraphValues, nid: str, samplers: set[str]) -> _Move | None:
    """One node whose output is a latent; None: unknown (warned)."""
    ct, inputs = g.cls(nid), g.inputs(nid)
    if nid in samplers or ct in SAMPLER_SEED_INPUT:
        if link(inputs.get("script")):
            _unknown(g, f"sampler {nid} ({ct}) runs a script")
            return None
        follow = next((k for k in ("latent_image", "latent", "samples") if link(inputs.get(k))),
                      "latent_image")
        return _Move(follow=follow, latent=True)
    if ct == "LatentUpscale":
        w, h = _sides(g, nid)
        if w is None or h is None:
            return None
        if w > 0 and h > 0:  # fixed size: the input does not matter
            return _Move(source=(max(64, w) // 8, max(64, h) // 8, DEFAULT_LATENT_FACTOR))
        return _Move(follow="samples", latent=True,
                     step=("latent_size", nid, w, h) if w or h else None)
    if ct == "LatentUpscaleBy":
        by = _number(g, nid, "scale_by", float)
        return None if by is None else _Move(follow="samples", latent=True, step=("latent_by", by))
    if ct in O_LATENT_FACTOR:  # quality-of-life suit (omar92): int(cells * factor), then rounded
        names = O_LATENT_FACTOR[ct]
        wf, hf = _number(g, nid, names[0], float), _number(g, nid, names[1], float)
        if wf is None or hf is None:
            return None
        return _Move(follow="samples", latent=True, step=("o_factor", nid, wf, hf))
    if ct == "LatentRotate":
        return _Move(follow="samples", latent=True,
                     step=("rotate", str(g.value(nid, "rotation")[0] or "")))
    if is_empty_latent(ct):
        return _empty(g, nid, LATENT_FACTOR.get(ct, DEFAULT_LATENT_FACTOR))
    if ct in EFFICIENT_LOADERS:  # its LATENT output is an empty latent of the stated size
        w, h = _number(g, nid, "empty_latent_width"), _number(g, nid, "empty_latent_height")
        if w is None or h is None:
            return None
        if w <= 0 or h <= 0:
            _unknown(g, f"node {nid} ({ct}) has a zero or negative side")
            return None
        return _Move(source=(int(w) // 8, int(h) // 8, DEFAULT_LATENT_FACTOR))
    if ct in VAE_ENCODERS:
        return _Move(follow="pixels", latent=False, step=("encode",))
    return _Move(follow=LATENT_SAME_SIZE.get(ct), latent=True)


def _image_move(g: GraphValues, nid: str) -> _Move | None:
    """One node whose output is an image; None: unknown (warned)."""
    ct, inputs = g.cls(nid), g.inputs(nid)
    if ct in VAE_DECODERS:
        return _Move(follow="samples", latent=True, step=("decode",))
    if ct in EFFICIENT_SAMPLERS:  # the sampler decodes its own latent (its IMAGE output)
        if link(inputs.get("script")):
            _unknown(g, f"sampler {nid} ({ct}) runs a script")
            return None
        return _Move(follow="latent_image", latent=True, step=("decode",))
    if ct == "ImageScale":
        w, h = _sides(g, nid)
        if w is None or h is None:
            return None
        if w > 0 and h > 0:  # fixed size: the input does not matter
            return _Move(source=(w, h, 1))
        return _Move(follow="image", step=("image_size", w, h) if w or h else None)
    if ct == "ImageScaleBy":
        by = _number(g, nid, "scale_by", float)
        return None if by is None else _Move(follow="image", step=("image_by", by))
    if ct == "ImageScaleToTotalPixels":
        mp = _number(g, nid, "megapixels", float)
        res_steps = _number(g, nid, "resolution_steps") if "resolution_steps" in inputs else 1
        if mp is None or res_steps is None:
            return None
        if mp <= 0 or res_steps < 1:
            _unknown(g, f"node {nid} ({ct}) asks for {mp} megapixels in steps of {res_steps}")
            return None
        return _Move(follow="image", step=("total_pixels", mp, res_steps))
    if ct == "ImageRotate":
        return _Move(follow="image", step=("rotate", str(g.value(nid, "rotation")[0] or "")))
    if ct == "ImageUpscaleWithModel":
        loader = g.linked_node(nid, "upscale_model")
        model = as_str(g.value(loader, "model_name")[0]) if loader else None
        _unknown(g, f"model upscaler {model or '?'} (node {nid}) has a scale the graph does not "
                    "state")
        return None
    if ct == "EmptyImage":
        return _empty(g, nid, 1)
    if ct.startswith("LoadImage"):
        _unknown(g, f"the image comes from a loaded file (node {nid}, {ct})")
        return None
    if ct in IMAGE_SAME_SIZE:
        return _Move(follow=IMAGE_SAME_SIZE[ct])
    if (not any(link(inputs.get(k)) for k in LATENT_INPUTS)
            and (w := as_int(g.value(nid, "width")[0]))
            and (h := as_int(g.value(nid, "height")[0])) and w > 0 and h > 0):
        return _Move(source=(w, h, 1))  # a node that makes an image of a stated size
    return _Move()


def saved_size(g: GraphValues, saver: str, samplers: set[str]) -> tuple[int, int] | None:
    """Walk back from one saving node to a node of known size, then replay the steps."""
    key = "images" if link(g.inputs(saver).get("images")) else "image"
    steps: list[tuple[Any, ...]] = []
    nid, name, latent = g.linked_node(saver, key), f"{saver}.{key}", False
    seen: set[tuple[str, bool]] = set()
    while True:
        if nid is None:
            _unknown(g, f"input {name} is not linked to a node")
            return None
        if (nid, latent) in seen or len(seen) >= MAX_DEPTH:
            _unknown(g, f"image chain too deep or cyclic at node {nid}")
            return None
        seen.add((nid, latent))
        move = _latent_move(g, nid, samplers) if latent else _image_move(g, nid)
        if move is None:
            return None
        if move.source is not None:
            source = move.source
            break
        if move.step is not None:
            steps.append(move.step)
        follow, latent = move.follow, move.latent
        if g.cls(nid) == "Reroute":
            follow = next((k for k, v in g.inputs(nid).items() if link(v)), None)
        if follow is None:
            _unknown(g, f"cannot follow the {'latent' if latent else 'image'} through node {nid} "
                        f"({g.cls(nid)})")
            return None
        name = f"{nid}.{follow}"
        nid = g.linked_node(nid, follow)
    try:
        return _replay(g, source, steps)
    except (OverflowError, ValueError, ZeroDivisionError) as exc:  # absurd scale factors
        _unknown(g, f"size arithmetic failed at node {saver} ({type(exc).__name__})")
        return None


def _replay(g: GraphValues, source: Source, steps: list[tuple[Any, ...]]) -> tuple[int, int] | None:
    """Apply the recorded steps from the source forward, with ComfyUI's own arithmetic."""
    w, h, factor = source
    for step in reversed(steps):
        if w <= 0 or h <= 0:
            break
        op = step[0]
        if op == "decode":
            w, h = w * factor, h * factor
        elif op == "encode":
            factor = DEFAULT_LATENT_FACTOR
            w, h = w // factor, h // factor
        elif op == "image_size":  # ImageScale with one side 0: keep the aspect ratio
            _, sw, sh = step
            w, h = ((max(1, round(w * sh / h)), sh) if sw == 0
                    else (sw, max(1, round(h * sw / w))))
        elif op == "image_by":  # ImageScaleBy: round(side * scale_by)
            w, h = round(w * step[1]), round(h * step[1])
        elif op == "total_pixels":  # ImageScaleToTotalPixels
            _, mp, res = step
            by = math.sqrt(mp * 1024 * 1024 / (w * h))
            w, h = round(w * by / res) * res, round(h * by / res) * res
        elif op == "latent_size":  # LatentUpscale with one side 0, in latent cells
            _, nid, sw, sh = step
            if factor != DEFAULT_LATENT_FACTOR:
                _unknown(g, f"LatentUpscale node {nid} on a 1/{factor} latent")
                return None
            if sw == 0:
                sh = max(64, sh)
                sw = max(64, round(w * sh / h))
            else:
                sw = max(64, sw)
                sh = max(64, round(h * sw / w))
            w, h = sw // 8, sh // 8
        elif op == "o_factor":  # LatentUpscaleFactor _O: int(cells * factor) to a multiple of 8
            _, nid, wf, hf = step
            w, h = min(int(w * wf), 8192), min(int(h * hf), 8192)
            if w < 8 or h < 8 or w % 8 or h % 8:
                # the pack's versions round to a multiple of 8 cells differently (up, or to the
                # nearest): only a result that needs no rounding is the same in all of them
                _unknown(g, f"node {nid} ({g.cls(nid)}) rounds {w}x{h} latent cells in a way that "
                            "differs between versions of its pack")
                return None
        elif op == "latent_by":  # LatentUpscaleBy: round(cells * scale_by)
            w, h = round(w * step[1]), round(h * step[1])
        elif op == "rotate" and step[1].startswith(("90", "270")):
            w, h = h, w
    if w <= 0 or h <= 0:
        _unknown(g, f"computed size {w}x{h} is empty")
        return None
    return w, h


def output_size(g: GraphValues, primary: str | None, samplers: set[str]) -> tuple[int, int] | None:
    """The size of the image the saving node writes, walked back from it to the latent.

    The saving nodes considered are those fed by the primary sampler (SaveImage-like ones
    before previews); when they disagree, or a step cannot be computed (model upscalers,
    loaded images, crops, unknown nodes), the size is unknown and a warning says why.
    """
    savers = [nid for nid in output_nodes(g.graph)
              if any(link(g.inputs(nid).get(k)) for k in ("images", "image"))]
    if primary is not None:
        fed = downstream(g.graph, primary)  # one walk: a walk up from each saver is quadratic
        savers = [nid for nid in savers if nid in fed]
    if not savers:
        g.warn("comfyui: output size unknown: no image-saving node"
               + (f" fed by sampler {primary}" if primary is not None else ""))
        return None
    writers = [nid for nid in savers if "Preview" not in g.cls(nid)] or savers
    sizes: dict[str, tuple[int, int]] = {}
    for nid in sorted(writers, key=node_sort_key):
        size = saved_size(g, nid, samplers)
        if size is None:
            return None
        sizes[nid] = size
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{nid} ({g.cls(nid)}) {w}x{h}" for nid, (w, h) in sizes.items())
        g.warn(f"comfyui: output size unknown: image-saving nodes disagree: {listed}")
        return None
    return next(iter(sizes.values()))


#: image -> image nodes that set the size in pixel space.
PIXEL_RESIZERS = frozenset({"ImageScale", "ImageScaleBy", "ImageScaleToTotalPixels",
                            "ImageUpscaleWithModel", "ImageCrop"})


def resized_after_decode(g: GraphValues, savers: list[str] | tuple[str, ...]) -> bool:
    """Whether each saver's image is resized in pixel space after its last VAE decode (the
    latent grid, a multiple of 8, then says nothing about the saved size)."""
    if not savers:
        return False
    for saver in savers:
        key = "images" if link(g.inputs(saver).get("images")) else "image"
        nid, seen, resized = g.linked_node(saver, key), set(), False
        while nid is not None and nid not in seen and len(seen) < MAX_DEPTH:
            seen.add(nid)
            ct = g.cls(nid)
            if ct in VAE_DECODERS:
                break
            if ct in PIXEL_RESIZERS or ct.startswith(("ImageScale", "ImageResize")):
                resized = True
                break
            nid = next((src for k in ("image", "images", "pixels", "image1", "destination")
                        if (src := g.linked_node(nid, k))), None)
        if not resized:
            return False
    return True
