"""Prompt texts: walk a sampler's conditioning input back to the text encoders that feed it.

Conditioning passes through combine/concat/area/ControlNet nodes on its way from the encoders to
the sampler; every text reached counts, in order, with the input it was read from (the input a
reprompt rewrites). A ``ConditioningZeroOut`` negative (Flux/SD3) is an empty prompt, not the
positive text it was made from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdeval.formats.comfyui_graph import InputPath, Link, link
from sdeval.inputs.metadata.comfyui.text import (LORA_TAG, Text, Texts, is_text_input,
                                                 power_prompt_text, wildcard_text)
from sdeval.inputs.metadata.comfyui.values import GraphValues

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
#: Efficiency Nodes loaders: the prompts are widget strings on the loader, encoded there
#: (``Efficient Loader`` outputs 1 and 2; the SDXL loader packs them into its SDXL tuple).
EFFICIENT_LOADERS = frozenset({"Efficient Loader", "Eff. Loader SDXL"})
#: Impact Pack's pipe unpackers: output index -> the ``ToBasicPipe`` input it returns.
PIPE_OUTPUTS: dict[str, dict[int, str]] = {
    "FromBasicPipe": {3: "positive", 4: "negative"},
    "FromBasicPipe_v2": {4: "positive", 5: "negative"},
}
NOT_SPECIAL = object()
#: conditioning is walked recursively (two frames a level): keep well under the recursion limit.
MAX_COND_DEPTH = 128


@dataclass(frozen=True)
class Piece:
    """One prompt text and the graph input it was read from."""

    text: str
    path: InputPath


def join(pieces: list[Piece] | None) -> str | None:
    """Distinct non-empty texts, one per line (SDXL text_g/text_l are often the same text)."""
    if pieces is None:
        return None
    texts = dict.fromkeys(p.text.strip() for p in pieces if p.text.strip())
    return "\n".join(texts)


class Conditioning:
    """The texts behind conditioning inputs of one graph, memoised per producing output: shared
    sub-graphs (a combine fed twice by the same node, repeated over and over) must not make the
    walk exponential."""

    def __init__(self, values: GraphValues) -> None:
        self.g = values
        self._memo: dict[Link, list[Piece] | None] = {}
        self._active: set[Link] = set()
        self.texts_of = Texts(values)

    def texts(self, node_id: str, name: str) -> list[Piece] | None:
        """The prompt texts feeding a conditioning input; None when they cannot be found."""
        if name not in self.g.inputs(node_id):
            return None
        return self._follow(self.g.inputs(node_id)[name], (node_id, name), 0)

    def _follow(self, value: Any, holder: InputPath, depth: int) -> list[Piece] | None:
        g = self.g
        source = link(value)
        if source is None:
            g.warn(f"comfyui: conditioning input {holder[0]}.{holder[1]} is not a link")
            return None
        if source[0] not in g.graph:
            g.warn(f"comfyui: unresolved link at {holder[0]}.{holder[1]} -> node {source[0]} "
                   "(no such node)")
            return None
        if source in self._memo:
            return self._memo[source]
        if source in self._active:
            return None  # a cycle, reported with the execution order
        if depth > MAX_COND_DEPTH:
            g.warn(f"comfyui: conditioning chain deeper than {MAX_COND_DEPTH} nodes at "
                   f"node {source[0]}; not followed")
            return None
        self._active.add(source)
        try:
            result = self._node(source[0], source[1], depth)
        finally:
            self._active.discard(source)
        if result is not None:
            result = list(dict.fromkeys(result))
        self._memo[source] = result
        return result

    def _node(self, src: str, out: int, depth: int) -> list[Piece] | None:
        g = self.g
        ct, inputs = g.cls(src), g.inputs(src)
        special = self._pack_node(src, ct, out, depth)
        if special is not NOT_SPECIAL:
            return special  # type: ignore[return-value]
        if ct in TEXT_ENCODERS or ("TextEncode" in ct and ct not in CONDITIONING_PASS):
            return self._encoder(src, ct, inputs, depth)
        if ct in ZERO_CONDITIONING:
            return []
        if ct in CONDITIONING_PASS:
            names = CONDITIONING_PASS[ct]
        elif link(inputs.get("positive")) and link(inputs.get("negative")):
            # ControlNetApplyAdvanced, InpaintModelConditioning...: output 0 positive, 1 negative
            if out not in (0, 1):
                g.warn(f"comfyui: cannot follow output {out} of node {src} ({ct})")
                return None
            names = ("positive",) if out == 0 else ("negative",)
        else:
            names = tuple(k for k, v in inputs.items()
                          if link(v) and ("conditioning" in k or k in ("cond", "positive")))
            if not names:
                if self._is_generic_encoder(inputs):
                    return self._encoder(src, ct, inputs, depth)
                g.warn(f"comfyui: cannot follow conditioning through node {src} ({ct})")
                return None
        pieces: list[Piece] = []
        for n in names:
            if n not in inputs:
                continue
            part = self._follow(inputs[n], (src, n), depth + 1)
            if part is None:
                return None  # one unknown part: the whole prompt is unknown, never a partial one
            pieces.extend(part)
        return pieces

    def bundle_texts(self, nid: str, name: str) -> tuple[list[Piece] | None, list[Piece] | None]:
        """Positive and negative texts carried in a bundle: Efficiency's SDXL tuple (from
        ``Eff. Loader SDXL``'s widgets or ``Pack SDXL Tuple``) or Impact's basic pipe."""
        src = self.g.linked_node(nid, name)
        ct = self.g.cls(src) if src is not None else "?"
        if src is not None and ct == "Eff. Loader SDXL":
            pos, neg = (self.texts_of.of_input(src, k) for k in ("positive", "negative"))
            return self._pieces(pos, (src, "positive")), self._pieces(neg, (src, "negative"))
        if src is not None and ct == "Pack SDXL Tuple":
            return self.texts(src, "base_positive"), self.texts(src, "base_negative")
        if src is not None and ct == "ToBasicPipe":
            return self.texts(src, "positive"), self.texts(src, "negative")
        self.g.warn(f"comfyui: cannot read the prompts in {name} of sampler {nid} (from node "
                    f"{src} ({ct}))")
        return None, None

    @staticmethod
    def _is_generic_encoder(inputs: dict[str, Any]) -> bool:
        """A node of any class that takes a CLIP and text: WAS ``Text to Conditioning``,
        ``BNK_CLIPTextEncodeAdvanced``, ``smZ CLIPTextEncode``..."""
        return (any(link(inputs.get(k)) for k in ("clip", "opt_clip"))
                and any(is_text_input(k) for k in inputs))

    def _pack_node(self, src: str, ct: str, out: int, depth: int) -> object:
        """Conditioning made by pack nodes whose text is a widget, not a text link."""
        t = self.texts_of
        if ct in EFFICIENT_LOADERS:
            if out not in (1, 2) or ct != "Efficient Loader":
                self.g.warn(f"comfyui: cannot follow output {out} of node {src} ({ct})")
                return None
            name = "positive" if out == 1 else "negative"
            return self._pieces(t.of_input(src, name), (src, name))
        if ct == "ImpactWildcardEncode":
            if out != 2:
                self.g.warn(f"comfyui: cannot follow output {out} of node {src} ({ct})")
                return None
            text = wildcard_text(t, src, 0)
            if text is not None and LORA_TAG.search(text[0]):
                t.unknown(src, "loads <lora:...> tags from its text and cuts them out before encoding")
                return None
            return self._pieces(text, (src, "populated_text"))
        if ct in ("Power Prompt (rgthree)", "Power Prompt - Simple (rgthree)"):
            return self._pieces(power_prompt_text(t, src, 0), (src, "prompt"))
        if ct in PIPE_OUTPUTS:
            name = PIPE_OUTPUTS[ct].get(out)
            pipe = self.g.linked_node(src, "basic_pipe")
            if name is None or pipe is None or self.g.cls(pipe) != "ToBasicPipe":
                self.g.warn(f"comfyui: cannot follow output {out} of node {src} ({ct})")
                return None
            return self.texts(pipe, name)
        return NOT_SPECIAL

    @staticmethod
    def _pieces(text: Text | None, holder: InputPath) -> list[Piece] | None:
        return None if text is None else [Piece(text[0], text[1] or holder)]

    def _encoder(self, src: str, ct: str, inputs: dict[str, Any], depth: int) -> list[Piece] | None:
        names = (TEXT_ENCODERS.get(ct) or tuple(n for n in GENERIC_TEXT_INPUTS if n in inputs)
                 or tuple(k for k in inputs if is_text_input(k)))
        present = [n for n in names if n in inputs]
        if not present:
            self.g.warn(f"comfyui: text encoder {src} ({ct}) has no text input")
            return None
        pieces = []
        for n in present:
            text = self.texts_of.of_input(src, n)  # a text walk of its own depth
            if text is None:
                return None  # a part unknown: the whole prompt is unknown
            pieces.append(Piece(text[0], text[1] or (src, n)))
        return pieces
