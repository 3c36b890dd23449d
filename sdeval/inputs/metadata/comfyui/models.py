"""The model: the checkpoint or UNet a sampler's ``model`` input comes from, the LoRAs applied on
the way, and the VAE that decodes the saved image.

Walked from the sampler (or its guider) up the ``model`` links: each LoRA loader on the way adds
its LoRAs (core ``LoraLoader``/``LoraLoaderModelOnly``, rgthree ``Power Lora Loader``, Comfyroll
``CR Load LoRA``/``CR Apply LoRA Stack``, Efficiency Nodes' loader with its LoRA stack) until a
loader names the model file. LoRAs are listed in the order they are applied (nearest the
checkpoint first). A LoRA loader that is not on the path (left unconnected) does not count.
"""

from __future__ import annotations

from typing import Any

from sdeval.formats.comfyui_graph import upstream
from sdeval.inputs.metadata._common import as_float, as_str
from sdeval.inputs.metadata.comfyui.values import MAX_DEPTH, GraphValues
from sdeval.inputs.metadata.types import LoraInfo

#: loader inputs that name the model file.
LOADER_INPUTS = ("ckpt_name", "unet_name", "base_ckpt_name")
#: inputs a model passes through on its way to the sampler, in the order they are tried.
MODEL_INPUTS = ("model", "opt_model", "base_model")
#: most LoRAs read from one stack chain.
MAX_LORAS = 256
#: Efficiency samplers decode their own output with ``optional_vae``.
EFFICIENT_SAMPLERS = frozenset({"KSampler (Efficient)", "KSampler Adv. (Efficient)",
                                "KSampler SDXL (Eff.)"})
#: names that mean "no VAE file: the checkpoint's own".
BAKED_VAE = frozenset({"Baked VAE", "None", ""})


def _loader_name(g: GraphValues, nid: str) -> str | None:
    for key in LOADER_INPUTS:
        name = as_str(g.value(nid, key)[0])
        if name:
            return name
    return None


def _start(g: GraphValues, start: str) -> str:
    guider = g.linked_node(start, "guider")
    return guider if guider is not None and "model" in g.inputs(guider) else start


def model_name(g: GraphValues, start: str) -> str | None:
    """The checkpoint/UNet name reached through ``model`` links from ``start`` (LoRA loaders in
    between; a guider's model for custom samplers), else the first loader in execution order."""
    nid: str | None = _start(g, start) if start in g.graph else None
    seen: set[str] = set()
    while nid is not None and nid not in seen and len(seen) < MAX_DEPTH:
        seen.add(nid)
        name = _loader_name(g, nid)
        if name:
            return name
        nid = next((src for k in MODEL_INPUTS if (src := g.linked_node(nid, k))), None)
    for nid in g.order:
        name = _loader_name(g, nid)
        if name:
            return name
    return None


def _lora(name: Any, model: Any, clip: Any) -> LoraInfo | None:
    name = as_str(name)
    if not name or name == "None":
        return None
    return LoraInfo(name=name, strength_model=as_float(model), strength_clip=as_float(clip))


def _stack(g: GraphValues, nid: str | None) -> list[LoraInfo]:
    """A ``LORA_STACK`` chain (Efficiency ``LoRA Stacker``, Comfyroll ``CR LoRA Stack``), in the
    order the stack lists them."""
    chain: list[str] = []
    seen: set[str] = set()
    while nid is not None and nid not in seen and len(seen) < MAX_DEPTH:
        seen.add(nid)
        chain.append(nid)
        nid = g.linked_node(nid, "lora_stack")
    loras: list[LoraInfo] = []
    # Efficiency's stacker puts its own LoRAs before the incoming stack; Comfyroll's puts the
    # incoming stack first.
    for nid in chain:
        own: list[LoraInfo] = []
        ct = g.cls(nid)
        if ct == "LoRA Stacker":
            count = as_float(g.value(nid, "lora_count")[0]) or 0
            simple = g.value(nid, "input_mode")[0] != "advanced"
            for i in range(1, min(int(count), MAX_LORAS) + 1):
                name = g.value(nid, f"lora_name_{i}")[0]
                if simple:
                    w = g.value(nid, f"lora_wt_{i}")[0]
                    item = _lora(name, w, w)
                else:
                    item = _lora(name, g.value(nid, f"model_str_{i}")[0], g.value(nid, f"clip_str_{i}")[0])
                if item:
                    own.append(item)
            loras = loras + own
        elif ct == "CR LoRA Stack":
            for i in range(1, 4):
                if g.value(nid, f"switch_{i}")[0] != "On":
                    continue
                item = _lora(g.value(nid, f"lora_name_{i}")[0], g.value(nid, f"model_weight_{i}")[0],
                             g.value(nid, f"clip_weight_{i}")[0])
                if item:
                    own.append(item)
            loras = own + loras  # the incoming (upstream) stack comes first
        else:
            g.warn(f"comfyui: LoRA stack node {nid} ({ct}) is not read; the LoRA list may be short")
    return loras[:MAX_LORAS]


def _node_loras(g: GraphValues, nid: str) -> list[LoraInfo]:
    """The LoRAs one node on the model path applies."""
    ct, inputs = g.cls(nid), g.inputs(nid)
    if ct in ("LoraLoader", "LoraLoader|pysssss"):
        item = _lora(g.value(nid, "lora_name")[0], g.value(nid, "strength_model")[0],
                     g.value(nid, "strength_clip")[0])
        return [item] if item else []
    if ct == "LoraLoaderModelOnly":
        item = _lora(g.value(nid, "lora_name")[0], g.value(nid, "strength_model")[0], None)
        return [item] if item else []
    if ct == "CR Load LoRA":
        if g.value(nid, "switch")[0] == "Off":
            return []
        item = _lora(g.value(nid, "lora_name")[0], g.value(nid, "strength_model")[0],
                     g.value(nid, "strength_clip")[0])
        return [item] if item else []
    if ct == "Power Lora Loader (rgthree)":
        found = []
        for key, value in inputs.items():
            if key.lower().startswith("lora_") and isinstance(value, dict) and value.get("on") is True:
                strength = value.get("strength")
                two = value.get("strengthTwo")
                item = _lora(value.get("lora"), strength, two if two is not None else strength)
                if item:
                    found.append(item)
        return found
    if ct == "CR Apply LoRA Stack":
        return _stack(g, g.linked_node(nid, "lora_stack"))
    if ct in ("Efficient Loader", "Eff. Loader SDXL"):
        own = _lora(g.value(nid, "lora_name")[0], g.value(nid, "lora_model_strength")[0],
                    g.value(nid, "lora_clip_strength")[0])
        return ([own] if own else []) + _stack(g, g.linked_node(nid, "lora_stack"))
    if "lora" in ct.lower() and "lora_name" in inputs:  # a LoRA loader of another pack
        item = _lora(g.value(nid, "lora_name")[0], g.value(nid, "strength_model")[0],
                     g.value(nid, "strength_clip")[0])
        return [item] if item else []
    return []


def lora_stack(g: GraphValues, start: str) -> tuple[LoraInfo, ...]:
    """The LoRAs on the model path from the checkpoint to ``start``, in the order applied."""
    nid: str | None = _start(g, start) if start in g.graph else None
    seen: set[str] = set()
    path: list[str] = []
    while nid is not None and nid not in seen and len(seen) < MAX_DEPTH:
        seen.add(nid)
        path.append(nid)
        if _loader_name(g, nid) and g.cls(nid) not in ("Efficient Loader", "Eff. Loader SDXL"):
            break
        nid = next((src for k in MODEL_INPUTS if (src := g.linked_node(nid, k))), None)
    loras: list[LoraInfo] = []
    for nid in reversed(path):  # nearest the checkpoint first
        loras.extend(_node_loras(g, nid))
        if len(loras) >= MAX_LORAS:
            break
    return tuple(loras[:MAX_LORAS])


def vae_name(g: GraphValues, savers: tuple[str, ...] | list[str]) -> str | None:
    """The VAE file decoding the saved image: the ``vae`` input of the decoders upstream of the
    saving nodes, when they all agree on one ``VAELoader`` (or an Efficiency loader's VAE); None
    when it is the checkpoint's own VAE, or unknown."""
    names: set[str | None] = set()
    reach = upstream(g.graph, savers) if savers else set()
    for nid in reach:
        ct = g.cls(nid)
        if ct.startswith("VAEDecode"):
            names.add(_vae_of(g, g.linked_node(nid, "vae")))
        elif ct in EFFICIENT_SAMPLERS and g.linked_node(nid, "optional_vae"):  # decodes itself
            names.add(_vae_of(g, g.linked_node(nid, "optional_vae")))
    if len(names) == 1:
        return names.pop()
    if len(names) > 1:
        g.warn("comfyui: the saved image is decoded by several VAEs; vae not recorded")
    return None


def _vae_of(g: GraphValues, nid: str | None) -> str | None:
    seen: set[str] = set()
    while nid is not None and nid not in seen and len(seen) < MAX_DEPTH:
        seen.add(nid)
        name = as_str(g.value(nid, "vae_name")[0])
        if name is not None:
            return None if name in BAKED_VAE else name
        if _loader_name(g, nid):
            return None  # the checkpoint's own VAE
        nid = g.linked_node(nid, "vae") or g.linked_node(nid, "optional_vae")
    return None
