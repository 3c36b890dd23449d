"""ComfyUI: prompt, seed and sampler settings from the API-format graph in the ``prompt`` chunk.

ComfyUI records no "prompt" or "seed" field, only the graph that made the image
(``{node_id: {"class_type", "inputs"}}``, links ``[source_id, output_index]``), so the values are
found by walking it backwards from the samplers (REFERENCE.md §3). Graphs are user-built and may
be odd or broken: everything unknown becomes a warning, never an exception. The walk also records
*where* seeds and prompt texts live (``SamplerInfo.seed_inputs``, :func:`find_prompt_inputs`) so the
regeneration loop can edit exactly those inputs and resubmit the graph.

Two sizes come out of a graph: ``width``/``height``, the latent the primary sampler starts from
(what a regeneration asks for), and ``output_width``/``output_height``, what the saving node
writes, replayed from that latent through LatentUpscale(By), VAEDecode/Encode and ImageScale(By)
nodes with ComfyUI's own rounding. A step whose size the graph does not state (a model upscaler,
a loaded image, a crop, an unknown node) makes the output size unknown, with a warning.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

from sdeval.inputs.metadata._common import as_float, as_int, as_str, dedupe, load_json
from sdeval.inputs.metadata.types import GenerationMetadata, SamplerInfo

InputPath = tuple[str, str]

#: sampler class -> input holding the seed (SamplerCustomAdvanced takes it from its ``noise`` node).
SAMPLER_SEED_INPUT: dict[str, str | None] = {
    "KSampler": "seed",
    "KSamplerAdvanced": "noise_seed",
    "SamplerCustom": "noise_seed",
    "SamplerCustomAdvanced": None,
}

#: text encoder class -> inputs holding prompt text, in the order they are joined.
TEXT_ENCODERS: dict[str, tuple[str, ...]] = {
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": ("text_g", "text_l"),
    "CLIPTextEncodeSDXLRefiner": ("text",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
    "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl"),
    "CLIPTextEncodeHunyuanDiT": ("bert", "mt5xl"),
    "CLIPTextEncodePixArtAlpha": ("text",),
}
#: text inputs read from encoders this module does not know by name (``*TextEncode*`` classes).
GENERIC_TEXT_INPUTS = ("text", "text_g", "text_l", "clip_l", "clip_g", "t5xxl", "prompt")

#: conditioning pass-through nodes -> the conditioning inputs that all feed the output.
CONDITIONING_PASS: dict[str, tuple[str, ...]] = {
    "ConditioningCombine": ("conditioning_1", "conditioning_2"),
    "ConditioningConcat": ("conditioning_to", "conditioning_from"),
    "ConditioningAverage": ("conditioning_to", "conditioning_from"),
    "ConditioningSetArea": ("conditioning",),
    "ConditioningSetAreaPercentage": ("conditioning",),
    "ConditioningSetAreaStrength": ("conditioning",),
    "ConditioningSetMask": ("conditioning",),
    "ConditioningSetTimestepRange": ("conditioning",),
    "ControlNetApply": ("conditioning",),
    "FluxGuidance": ("conditioning",),
    "unCLIPConditioning": ("conditioning",),
}
#: nodes whose output is an *empty* conditioning: the negative of Flux/SD3 graphs is often
#: ``ConditioningZeroOut(positive)``; reporting the positive text as the negative would be wrong.
ZERO_CONDITIONING = frozenset({"ConditioningZeroOut"})

#: inputs a primitive-like node keeps its value in, in the order they are tried.
PRIMITIVE_INPUTS = ("value", "string", "text", "seed", "noise_seed", "int", "float", "number",
                    "prompt")

#: nodes that write or show images; a sampler upstream of one of these made the saved image.
OUTPUT_CLASSES = frozenset({
    "SaveImage", "PreviewImage", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveImageWebsocket",
    "SaveWEBM", "SaveVideo", "Image Save", "VHS_VideoCombine",
})

#: sigma-producing nodes with no ``scheduler`` input: the schedule is the node itself.
SCHEDULER_CLASSES = {
    "KarrasScheduler": "karras", "ExponentialScheduler": "exponential",
    "PolyexponentialScheduler": "polyexponential", "VPScheduler": "vp",
    "AlignYourStepsScheduler": "align_your_steps", "SDTurboScheduler": "sd_turbo",
    "BetaSamplingScheduler": "beta", "LaplaceScheduler": "laplace", "GITSScheduler": "gits",
    "OptimalStepsScheduler": "optimal_steps",
}

#: --- output size (what the saved image measures), walked back from the image-saving node ---
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

LOADER_INPUTS = ("ckpt_name", "unet_name")
LATENT_INPUTS = ("latent_image", "samples", "latent", "pixels", "image", "images")
SEED_INPUTS = ("seed", "noise_seed")
MAX_DEPTH = 256
#: conditioning is walked recursively (two frames a level): keep well under the recursion limit.
MAX_COND_DEPTH = 128


@dataclass(frozen=True)
class _Piece:
    """One prompt text and the graph input it was read from."""

    text: str
    path: InputPath


def _link(value: Any) -> tuple[str, int] | None:
    """``[source_id, output_index]`` as a tuple, or None when the value is a literal."""
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and isinstance(value[0], (str, int)) and not isinstance(value[0], bool)
            and isinstance(value[1], int) and not isinstance(value[1], bool)):
        return str(value[0]), value[1]
    return None


def _id_key(node_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order first ("2" < "10"), then the rest as text."""
    return (0, int(node_id), "") if node_id.isascii() and node_id.isdigit() else (1, 0, node_id)


def _join(pieces: list[_Piece] | None) -> str | None:
    """Distinct non-empty texts, one per line (SDXL text_g/text_l are often the same text)."""
    if pieces is None:
        return None
    texts = dict.fromkeys(p.text.strip() for p in pieces if p.text.strip())
    return "\n".join(texts)


class _Walker:
    """One pass over one graph: node table, warnings, and the lookups every reader step uses."""

    def __init__(self, graph: Any) -> None:
        self.warnings: list[str] = []
        self.nodes: dict[str, tuple[str, dict[str, Any]]] = {}
        self.order: list[str] = []
        self._cond_memo: dict[tuple[str, int], list[_Piece] | None] = {}
        self._cond_active: set[tuple[str, int]] = set()
        if not isinstance(graph, dict):
            self.warn(f"comfyui: graph is a {type(graph).__name__}, not an object of nodes")
            return
        if (isinstance(graph.get("prompt"), dict)
                and not any(isinstance(v, dict) and "class_type" in v for v in graph.values())):
            graph = graph["prompt"]  # a whole POST /prompt body
        elif isinstance(graph.get("nodes"), list) and "links" in graph:
            self.warn("comfyui: this is a UI workflow, not an API-format graph; not read")
            return
        for node_id, node in graph.items():
            node_id = str(node_id)
            if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
                self.warn(f"comfyui: node {node_id} has no class_type; skipped")
                continue
            inputs = node.get("inputs")
            self.nodes[node_id] = (node["class_type"], inputs if isinstance(inputs, dict) else {})
        self.order, self.cyclic = self._execution_order()
        if self.cyclic:
            self.warn("comfyui: cycle in links among nodes " + ", ".join(self.cyclic))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def cls(self, node_id: str) -> str:
        return self.nodes[node_id][0] if node_id in self.nodes else "?"

    def inputs(self, node_id: str) -> dict[str, Any]:
        return self.nodes[node_id][1] if node_id in self.nodes else {}

    # --- graph shape -------------------------------------------------------------------------

    def _execution_order(self) -> tuple[list[str], list[str]]:
        """Upstream before downstream (Kahn, ties by id); nodes on cycles come last, flagged."""
        deps: dict[str, set[str]] = {nid: set() for nid in self.nodes}
        users: dict[str, set[str]] = {nid: set() for nid in self.nodes}
        for nid, (_, inputs) in self.nodes.items():
            for value in inputs.values():
                link = _link(value)
                if link and link[0] in self.nodes and link[0] != nid:
                    deps[nid].add(link[0])
                    users[link[0]].add(nid)
                elif link and link[0] == nid:
                    deps[nid].add(nid)  # a self-loop never becomes ready: reported as a cycle
        pending = {nid: len(d) for nid, d in deps.items()}
        heap = [(_id_key(nid), nid) for nid, n in pending.items() if n == 0]
        heapq.heapify(heap)
        order: list[str] = []
        while heap:
            _, nid = heapq.heappop(heap)
            order.append(nid)
            for user in users[nid]:
                pending[user] -= 1
                if pending[user] == 0:
                    heapq.heappush(heap, (_id_key(user), user))
        done = set(order)
        cyclic = sorted((nid for nid in self.nodes if nid not in done), key=_id_key)
        return order + cyclic, cyclic

    def upstream_of_outputs(self) -> set[str] | None:
        """Every node that feeds an image-saving node; None when the graph has no such node."""
        outputs = [nid for nid, (ct, _) in self.nodes.items()
                   if ct in OUTPUT_CLASSES or "Save" in ct or "Preview" in ct]
        if not outputs:
            return None
        seen: set[str] = set()
        stack = list(outputs)
        while stack:
            nid = stack.pop()
            if nid in seen or nid not in self.nodes:
                continue
            seen.add(nid)
            stack.extend(link[0] for v in self.inputs(nid).values() if (link := _link(v)))
        return seen

    # --- values ------------------------------------------------------------------------------

    def value(self, node_id: str, name: str) -> tuple[Any, InputPath | None]:
        """An input's literal value and the input that holds it, following primitive links."""
        inputs = self.inputs(node_id)
        if name not in inputs:
            return None, None
        return self.resolve(inputs[name], (node_id, name), frozenset({node_id}))

    def resolve(self, value: Any, path: InputPath, seen: frozenset[str]
                ) -> tuple[Any, InputPath | None]:
        """Follow a link to a primitive-like node (``value``/``text``/``seed``... input)."""
        for _ in range(MAX_DEPTH):
            link = _link(value)
            if link is None:
                return value, path
            src = link[0]
            if src not in self.nodes:
                self.warn(f"comfyui: unresolved link at {path[0]}.{path[1]} -> node {src} "
                          "(no such node)")
                return None, None
            if src in seen:
                return None, None  # a cycle, reported by the execution order
            inputs = self.inputs(src)
            name = next((k for k in PRIMITIVE_INPUTS if k in inputs), None)
            if name is None and self.cls(src) == "StringConcatenate" and len(seen) < 32:
                a, b, d = (self.resolve(inputs.get(k), (src, k), seen | {src})[0]
                           for k in ("string_a", "string_b", "delimiter"))
                if isinstance(a, str) and isinstance(b, str):
                    return a + (d if isinstance(d, str) else "") + b, None
            if name is None:
                self.warn(f"comfyui: unresolved link at {path[0]}.{path[1]} -> node {src} "
                          f"({self.cls(src)})")
                return None, None
            value, path, seen = inputs[name], (src, name), seen | {src}
        self.warn(f"comfyui: link chain deeper than {MAX_DEPTH} nodes at {path[0]}.{path[1]}; "
                  "not followed")
        return None, None

    # --- conditioning ------------------------------------------------------------------------

    def conditioning(self, node_id: str, name: str) -> list[_Piece] | None:
        """The prompt texts feeding a conditioning input; None when they cannot be found."""
        if name not in self.inputs(node_id):
            return None
        return self._cond(self.inputs(node_id)[name], (node_id, name), 0)

    def _cond(self, value: Any, holder: InputPath, depth: int) -> list[_Piece] | None:
        """Memoised per producing output: shared sub-graphs (a combine fed twice by the same
        node, repeated over and over) must not make the walk exponential."""
        link = _link(value)
        if link is None:
            self.warn(f"comfyui: conditioning input {holder[0]}.{holder[1]} is not a link")
            return None
        if link[0] not in self.nodes:
            self.warn(f"comfyui: unresolved link at {holder[0]}.{holder[1]} -> node {link[0]} "
                      "(no such node)")
            return None
        if link in self._cond_memo:
            return self._cond_memo[link]
        if link in self._cond_active:
            return None  # a cycle, reported by the execution order
        if depth > MAX_COND_DEPTH:
            self.warn(f"comfyui: conditioning chain deeper than {MAX_COND_DEPTH} nodes at "
                      f"node {link[0]}; not followed")
            return None
        self._cond_active.add(link)
        try:
            result = self._cond_node(link[0], link[1], depth)
        finally:
            self._cond_active.discard(link)
        if result is not None:
            result = list(dict.fromkeys(result))
        self._cond_memo[link] = result
        return result

    def _cond_node(self, src: str, out: int, depth: int) -> list[_Piece] | None:
        ct, inputs = self.nodes[src]
        if ct in TEXT_ENCODERS or ("TextEncode" in ct and ct not in CONDITIONING_PASS):
            names = TEXT_ENCODERS.get(ct) or tuple(n for n in GENERIC_TEXT_INPUTS if n in inputs)
            pieces, unresolved = [], False
            for n in names:
                text, path = self.value(src, n)
                if isinstance(text, str):
                    pieces.append(_Piece(text, path or (src, n)))
                elif n in inputs:
                    unresolved = True
            if not pieces and (unresolved or not any(n in inputs for n in names)):
                if not unresolved:
                    self.warn(f"comfyui: text encoder {src} ({ct}) has no text input")
                return None
            return pieces
        if ct in ZERO_CONDITIONING:
            return []
        if ct in CONDITIONING_PASS:
            names = CONDITIONING_PASS[ct]
        elif _link(inputs.get("positive")) and _link(inputs.get("negative")):
            # ControlNetApplyAdvanced, InpaintModelConditioning...: output 0 positive, 1 negative
            if out not in (0, 1):
                self.warn(f"comfyui: cannot follow output {out} of node {src} ({ct})")
                return None
            names = ("positive",) if out == 0 else ("negative",)
        else:
            names = tuple(k for k, v in inputs.items()
                          if _link(v) and ("conditioning" in k or k in ("cond", "positive")))
            if not names:
                self.warn(f"comfyui: cannot follow conditioning through node {src} ({ct})")
                return None
        parts = [self._cond(inputs[n], (src, n), depth + 1) for n in names if n in inputs]
        found = [p for p in parts if p is not None]
        return [piece for part in found for piece in part] if found else None

    # --- samplers ----------------------------------------------------------------------------

    def sampler_ids(self) -> list[str]:
        """Known samplers, plus unknown nodes shaped like one (a seed and a positive input)."""
        ids = []
        for nid in self.order:
            ct, inputs = self.nodes[nid]
            if ct in SAMPLER_SEED_INPUT:
                ids.append(nid)
            elif _link(inputs.get("positive")) and any(k in inputs for k in SEED_INPUTS):
                ids.append(nid)
            elif _link(inputs.get("noise")) and _link(inputs.get("guider")):
                ids.append(nid)
        return ids

    def seeded_ids(self) -> list[str]:
        """Without any sampler, nodes holding a seed stand in (weight-free test graphs)."""
        return [nid for nid in self.order
                if any(as_int(self.value(nid, k)[0]) is not None for k in SEED_INPUTS)]

    def linked_node(self, node_id: str, name: str) -> str | None:
        link = _link(self.inputs(node_id).get(name))
        return link[0] if link and link[0] in self.nodes else None

    def sampler(self, nid: str) -> tuple[SamplerInfo, list[_Piece] | None]:
        """One sampler's settings and its positive prompt pieces."""
        ct, inputs = self.nodes[nid]
        seed = seed_path = None
        cfg_node = cond_node = nid
        pos_name, neg_name = "positive", "negative"
        noise = self.linked_node(nid, "noise")
        if noise is not None:
            key = next((k for k in SEED_INPUTS if k in self.inputs(noise)), None)
            if key is not None:
                seed, seed_path = self.value(noise, key)
            elif self.cls(noise) != "DisableNoise":
                self.warn(f"comfyui: no seed found in noise node {noise} ({self.cls(noise)})")
        else:
            key = SAMPLER_SEED_INPUT.get(ct) or next((k for k in SEED_INPUTS if k in inputs), None)
            if key is not None:
                seed, seed_path = self.value(nid, key)
        guider = self.linked_node(nid, "guider")
        if guider is not None:
            cfg_node = cond_node = guider
            g_inputs = self.inputs(guider)
            if "positive" in g_inputs:
                pass
            elif "conditioning" in g_inputs:  # BasicGuider: no negative, no cfg
                pos_name, neg_name = "conditioning", ""
            elif "cond1" in g_inputs:  # DualCFGGuider
                pos_name = "cond1"
            else:
                self.warn(f"comfyui: cannot read guider {guider} ({self.cls(guider)})")
                pos_name = neg_name = ""
        positive = self.conditioning(cond_node, pos_name) if pos_name else None
        if pos_name == "cond1":
            extra = self.conditioning(cond_node, "cond2")
            if positive is not None or extra is not None:
                positive = (positive or []) + (extra or [])
        negative = self.conditioning(cond_node, neg_name) if neg_name else None
        cfg = as_float(self.value(cfg_node, "cfg")[0])
        if cfg is None:
            cfg = as_float(self.value(cfg_node, "cfg_conds")[0])

        steps = as_int(self.value(nid, "steps")[0])
        scheduler = as_str(self.value(nid, "scheduler")[0])
        denoise = as_float(self.value(nid, "denoise")[0])
        sigmas = self.linked_node(nid, "sigmas")
        for _ in range(MAX_DEPTH):
            if sigmas is None:
                break
            s_inputs = self.inputs(sigmas)
            if ("steps" in s_inputs or "scheduler" in s_inputs
                    or self.cls(sigmas) in SCHEDULER_CLASSES):
                steps = steps if steps is not None else as_int(self.value(sigmas, "steps")[0])
                scheduler = (as_str(self.value(sigmas, "scheduler")[0])
                             or SCHEDULER_CLASSES.get(self.cls(sigmas)))
                if denoise is None:
                    denoise = as_float(self.value(sigmas, "denoise")[0])
                break
            nxt = self.linked_node(sigmas, "sigmas")  # SplitSigmas, FlipSigmas...
            sigmas = nxt if nxt != sigmas else None
        sampler_name = as_str(self.value(nid, "sampler_name")[0])
        sampler_node = self.linked_node(nid, "sampler")
        if sampler_name is None and sampler_node is not None:
            sampler_name = as_str(self.value(sampler_node, "sampler_name")[0])

        seed_int = as_int(seed)
        info = SamplerInfo(
            node_id=nid, class_type=ct, seed=seed_int, steps=steps, cfg=cfg,
            sampler=sampler_name, scheduler=scheduler, denoise=denoise,
            prompt=_join(positive), negative_prompt=_join(negative),
            seed_inputs=((seed_path,) if seed_path is not None and seed_int is not None else ()))
        return info, positive

    def seeded_node(self, nid: str) -> tuple[SamplerInfo, list[_Piece] | None]:
        """A stand-in 'sampler' for a graph whose only randomness is a node's seed input."""
        key = next(k for k in SEED_INPUTS if as_int(self.value(nid, k)[0]) is not None)
        seed, path = self.value(nid, key)
        pieces = None
        for name in ("text", "prompt"):
            text, tpath = self.value(nid, name)
            if isinstance(text, str):
                pieces = [_Piece(text, tpath or (nid, name))]
                break
        info = SamplerInfo(node_id=nid, class_type=self.cls(nid), seed=as_int(seed),
                           steps=as_int(self.value(nid, "steps")[0]),
                           prompt=_join(pieces), seed_inputs=((path,) if path else ()))
        return info, pieces

    # --- size and model ----------------------------------------------------------------------

    def size(self, start: str, samplers: set[str]) -> tuple[int, int] | None:
        """The latent/image size entering ``start``, walking its latent chain upstream."""
        scale = 1.0
        nid: str | None = start
        seen: set[str] = set()
        while nid is not None and nid not in seen and len(seen) < MAX_DEPTH:
            seen.add(nid)
            w = as_int(self.value(nid, "width")[0])
            h = as_int(self.value(nid, "height")[0])
            if nid not in samplers and w and h and w > 0 and h > 0:
                sw, sh = w * scale, h * scale
                if not (math.isfinite(sw) and math.isfinite(sh)):
                    return None  # absurd scale factors: no size rather than a crash
                return round(sw), round(sh)
            factor = as_float(self.value(nid, "scale_by")[0])
            if factor and factor > 0 and nid not in samplers:
                scale *= factor
            nid = next((src for n in LATENT_INPUTS if (src := self.linked_node(nid, n))), None)
        return None

    def fallback_size(self) -> tuple[int, int] | None:
        """The one size all empty-latent/empty-image nodes agree on, when the chain gave none."""
        sizes = set()
        for nid, (ct, _) in self.nodes.items():
            if ct == "EmptyImage" or (ct.startswith("Empty") and "Latent" in ct):
                w = as_int(self.value(nid, "width")[0])
                h = as_int(self.value(nid, "height")[0])
                if w and h:
                    sizes.add((w, h))
        return sizes.pop() if len(sizes) == 1 else None

    # --- output size ---------------------------------------------------------------------------

    def _upstream(self, start: str) -> set[str]:
        seen: set[str] = set()
        stack = [start]
        while stack:
            nid = stack.pop()
            if nid in seen or nid not in self.nodes:
                continue
            seen.add(nid)
            stack.extend(link[0] for v in self.inputs(nid).values() if (link := _link(v)))
        return seen

    def output_size(self, primary: str | None, samplers: set[str]) -> tuple[int, int] | None:
        """The size of the image the saving node writes, walked back from it to the latent.

        The saving nodes considered are those fed by the primary sampler (SaveImage-like ones
        before previews); when they disagree, or a step cannot be computed (model upscalers,
        loaded images, crops, unknown nodes), the size is unknown and a warning says why.
        """
        savers = [nid for nid, (ct, inputs) in self.nodes.items()
                  if (ct in OUTPUT_CLASSES or "Save" in ct or "Preview" in ct)
                  and any(_link(inputs.get(k)) for k in ("images", "image"))]
        if primary is not None:
            savers = [nid for nid in savers if primary in self._upstream(nid)]
        if not savers:
            self.warn("comfyui: output size unknown: no image-saving node"
                      + (f" fed by sampler {primary}" if primary is not None else ""))
            return None
        writers = [nid for nid in savers if "Preview" not in self.cls(nid)] or savers
        sizes: dict[str, tuple[int, int]] = {}
        for nid in sorted(writers, key=_id_key):
            size = self._saved_size(nid, samplers)
            if size is None:
                return None
            sizes[nid] = size
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{nid} ({self.cls(nid)}) {w}x{h}"
                               for nid, (w, h) in sizes.items())
            self.warn(f"comfyui: output size unknown: image-saving nodes disagree: {listed}")
            return None
        return next(iter(sizes.values()))

    def _unknown(self, why: str) -> None:
        self.warn(f"comfyui: output size unknown: {why}")

    def _number(self, nid: str, name: str, kind: type = int) -> float | int | None:
        value = self.value(nid, name)[0]
        number = as_int(value) if kind is int else as_float(value)
        if number is None:
            self._unknown(f"{name} of node {nid} ({self.cls(nid)}) is not a number")
        return number

    def _sides(self, nid: str) -> tuple[int | None, int | None]:
        """``width`` and ``height`` of a node; (None, None) with a warning when not both >= 0."""
        w, h = self._number(nid, "width"), self._number(nid, "height")
        if w is None or h is None:
            return None, None
        if w < 0 or h < 0:
            self._unknown(f"node {nid} ({self.cls(nid)}) has a negative side")
            return None, None
        return int(w), int(h)

    def _saved_size(self, saver: str, samplers: set[str]) -> tuple[int, int] | None:
        """Walk back from one saving node to a node of known size, then replay the steps."""
        key = "images" if _link(self.inputs(saver).get("images")) else "image"
        steps: list[tuple[Any, ...]] = []
        nid, name, latent = self.linked_node(saver, key), f"{saver}.{key}", False
        seen: set[tuple[str, bool]] = set()
        source: tuple[int, int, int] | None = None  # (w, h, pixels per cell; 1 for images)
        while source is None:
            if nid is None:
                self._unknown(f"input {name} is not linked to a node")
                return None
            if (nid, latent) in seen or len(seen) >= MAX_DEPTH:
                self._unknown(f"image chain too deep or cyclic at node {nid}")
                return None
            seen.add((nid, latent))
            ct, inputs = self.nodes[nid]
            nxt: str | None = None  # the input to follow next
            if latent:
                if nid in samplers or ct in SAMPLER_SEED_INPUT:
                    if _link(inputs.get("script")):
                        self._unknown(f"sampler {nid} ({ct}) runs a script")
                        return None
                    nxt = next((k for k in ("latent_image", "latent", "samples")
                                if _link(inputs.get(k))), "latent_image")
                elif ct == "LatentUpscale":
                    w, h = self._sides(nid)
                    if w is None or h is None:
                        return None
                    if w > 0 and h > 0:  # fixed size: the input does not matter
                        source = (max(64, w) // 8, max(64, h) // 8, DEFAULT_LATENT_FACTOR)
                        continue
                    if w or h:
                        steps.append(("latent_size", nid, w, h))
                    nxt = "samples"
                elif ct == "LatentUpscaleBy":
                    by = self._number(nid, "scale_by", float)
                    if by is None:
                        return None
                    steps.append(("latent_by", by))
                    nxt = "samples"
                elif ct == "LatentRotate":
                    steps.append(("rotate", str(self.value(nid, "rotation")[0] or "")))
                    nxt = "samples"
                elif ct.startswith("Empty") and "Latent" in ct:
                    w, h = self._sides(nid)
                    if not w or not h:
                        if w == 0 or h == 0:
                            self._unknown(f"node {nid} ({ct}) has a zero side")
                        return None
                    f = LATENT_FACTOR.get(ct, DEFAULT_LATENT_FACTOR)
                    source = (w // f, h // f, f)
                    continue
                elif ct in VAE_ENCODERS:
                    steps.append(("encode",))
                    nxt, latent = "pixels", False
                elif ct in LATENT_SAME_SIZE:
                    nxt = LATENT_SAME_SIZE[ct]
            else:
                if ct in VAE_DECODERS:
                    steps.append(("decode",))
                    nxt, latent = "samples", True
                elif ct == "ImageScale":
                    w, h = self._sides(nid)
                    if w is None or h is None:
                        return None
                    if w > 0 and h > 0:  # fixed size: the input does not matter
                        source = (w, h, 1)
                        continue
                    if w or h:
                        steps.append(("image_size", w, h))
                    nxt = "image"
                elif ct == "ImageScaleBy":
                    by = self._number(nid, "scale_by", float)
                    if by is None:
                        return None
                    steps.append(("image_by", by))
                    nxt = "image"
                elif ct == "ImageScaleToTotalPixels":
                    mp = self._number(nid, "megapixels", float)
                    res_steps = (self._number(nid, "resolution_steps")
                                 if "resolution_steps" in inputs else 1)
                    if mp is None or res_steps is None:
                        return None
                    if mp <= 0 or res_steps < 1:
                        self._unknown(f"node {nid} ({ct}) asks for {mp} megapixels in steps "
                                      f"of {res_steps}")
                        return None
                    steps.append(("total_pixels", mp, res_steps))
                    nxt = "image"
                elif ct == "ImageRotate":
                    steps.append(("rotate", str(self.value(nid, "rotation")[0] or "")))
                    nxt = "image"
                elif ct == "ImageUpscaleWithModel":
                    loader = self.linked_node(nid, "upscale_model")
                    model = as_str(self.value(loader, "model_name")[0]) if loader else None
                    self._unknown(f"model upscaler {model or '?'} (node {nid}) has a scale "
                                  "the graph does not state")
                    return None
                elif ct == "EmptyImage":
                    w, h = self._sides(nid)
                    if not w or not h:
                        if w == 0 or h == 0:
                            self._unknown(f"node {nid} ({ct}) has a zero side")
                        return None
                    source = (w, h, 1)
                    continue
                elif ct.startswith("LoadImage"):
                    self._unknown(f"the image comes from a loaded file (node {nid}, {ct})")
                    return None
                elif ct in IMAGE_SAME_SIZE:
                    nxt = IMAGE_SAME_SIZE[ct]
                elif (not any(_link(inputs.get(k)) for k in LATENT_INPUTS)
                      and (w := as_int(self.value(nid, "width")[0]))
                      and (h := as_int(self.value(nid, "height")[0])) and w > 0 and h > 0):
                    source = (w, h, 1)  # a node that makes an image of a stated size
                    continue
            if ct == "Reroute":
                nxt = next((k for k, v in inputs.items() if _link(v)), None)
            if nxt is None:
                self._unknown(f"cannot follow the {'latent' if latent else 'image'} through "
                              f"node {nid} ({ct})")
                return None
            name = f"{nid}.{nxt}"
            nid = self.linked_node(nid, nxt)
        try:
            return self._replay(source, steps)
        except (OverflowError, ValueError, ZeroDivisionError) as exc:  # absurd scale factors
            self._unknown(f"size arithmetic failed at node {saver} ({type(exc).__name__})")
            return None

    def _replay(self, source: tuple[int, int, int], steps: list[tuple[Any, ...]]
                ) -> tuple[int, int] | None:
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
                    self._unknown(f"LatentUpscale node {nid} on a 1/{factor} latent")
                    return None
                if sw == 0:
                    sh = max(64, sh)
                    sw = max(64, round(w * sh / h))
                else:
                    sw = max(64, sw)
                    sh = max(64, round(h * sw / w))
                w, h = sw // 8, sh // 8
            elif op == "latent_by":  # LatentUpscaleBy: round(cells * scale_by)
                w, h = round(w * step[1]), round(h * step[1])
            elif op == "rotate" and step[1].startswith(("90", "270")):
                w, h = h, w
        if w <= 0 or h <= 0:
            self._unknown(f"computed size {w}x{h} is empty")
            return None
        return w, h

    def model(self, start: str) -> str | None:
        """The checkpoint/UNet name reached through ``model`` links (LoRA loaders in between)."""
        nid: str | None = start
        guider = self.linked_node(start, "guider")
        if guider is not None and "model" in self.inputs(guider):
            nid = guider
        seen: set[str] = set()
        while nid is not None and nid not in seen and len(seen) < MAX_DEPTH:
            seen.add(nid)
            for key in LOADER_INPUTS:
                name = as_str(self.value(nid, key)[0])
                if name:
                    return name
            nid = self.linked_node(nid, "model")
        for nid in self.order:
            for key in LOADER_INPUTS:
                name = as_str(self.value(nid, key)[0])
                if name:
                    return name
        return None

    # --- everything --------------------------------------------------------------------------

    def primary_and_rest(self) -> tuple[list[tuple[SamplerInfo, list[_Piece] | None]], set[str]]:
        """All samplers, primary first: the first (upstream) one whose output is saved.

        Then the other saved samplers, then unsaved ones, each group in execution order.
        """
        sampler_ids = self.sampler_ids()
        if sampler_ids:
            found = [self.sampler(nid) for nid in sampler_ids]
        else:
            sampler_ids = self.seeded_ids()
            found = [self.seeded_node(nid) for nid in sampler_ids]
        reach = self.upstream_of_outputs()
        if reach is not None:  # saved ones first (stable: each group stays in execution order)
            found.sort(key=lambda item: item[0].node_id not in reach)
        return found, set(sampler_ids)


def walk_graph(graph: dict) -> GenerationMetadata:
    """Read prompt, seed, size, model and every sampler from an API-format ComfyUI graph."""
    walker = _Walker(graph)
    if not walker.nodes:
        return GenerationMetadata(source="none", warnings=dedupe(walker.warnings))
    found, sampler_ids = walker.primary_and_rest()
    samplers = tuple(info for info, _ in found)
    primary = samplers[0] if samplers else None
    size = None
    if primary is not None:
        size = walker.size(primary.node_id, sampler_ids - {primary.node_id})
    size = size or walker.fallback_size()
    output = walker.output_size(primary.node_id if primary is not None else None, sampler_ids)
    model = walker.model(primary.node_id) if primary is not None else walker.model("")
    return GenerationMetadata(
        source="comfyui",
        prompt=primary.prompt if primary else None,
        negative_prompt=primary.negative_prompt if primary else None,
        seed=primary.seed if primary else None,
        width=size[0] if size else None,
        height=size[1] if size else None,
        output_width=output[0] if output else None,
        output_height=output[1] if output else None,
        steps=primary.steps if primary else None,
        cfg=primary.cfg if primary else None,
        sampler=primary.sampler if primary else None,
        scheduler=primary.scheduler if primary else None,
        model=model,
        samplers=samplers,
        warnings=dedupe(walker.warnings),
    )


def parse_comfyui(prompt_json_text: str, *, max_json_bytes: int | None = None
                  ) -> GenerationMetadata:
    """Parse the ``prompt`` chunk text; malformed or oversize JSON gives a warning, not an error."""
    graph, problem = load_json(prompt_json_text, "comfyui 'prompt'", max_json_bytes)
    if problem is not None:
        return GenerationMetadata(source="none", warnings=(problem,))
    return walk_graph(graph)


def find_prompt_inputs(graph: dict) -> list[tuple[str, str]]:
    """``(node_id, input_name)`` of each literal text feeding the primary's positive prompt.

    These are the inputs to rewrite when a gate asks to regenerate with a changed prompt; texts
    reached through primitive nodes point at the primitive's input.
    """
    walker = _Walker(graph)
    if not walker.nodes:
        return []
    found, _ = walker.primary_and_rest()
    if not found or not found[0][1]:
        return []
    return list(dict.fromkeys(piece.path for piece in found[0][1]))
