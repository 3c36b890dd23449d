"""Samplers: which nodes sample, their seed (and the input that holds it), steps, cfg, schedule,
and their prompts; the primary sampler is the first (upstream) one whose output is saved.

A hires pass or refiner is a second sampler of the same graph; the one a regeneration must ask
for is the first one that feeds a saved image. Nodes shaped like a sampler (a seed and a linked
``positive``, or ``noise`` + ``guider``) count even when their class is unknown; a graph without
any sampler falls back to nodes holding a seed (weight-free test graphs).
"""

from __future__ import annotations

from sdeval.formats.comfyui_graph import link, output_nodes, upstream
from sdeval.inputs.metadata._common import as_float, as_int, as_str
from sdeval.inputs.metadata.comfyui.conditioning import Conditioning, Piece, join
from sdeval.inputs.metadata.comfyui.values import MAX_DEPTH, GraphValues
from sdeval.inputs.metadata.types import SamplerInfo

#: sampler class -> input holding the seed (SamplerCustomAdvanced takes it from its ``noise`` node).
SAMPLER_SEED_INPUT: dict[str, str | None] = {
    "KSampler": "seed",
    "KSamplerAdvanced": "noise_seed",
    "SamplerCustom": "noise_seed",
    "SamplerCustomAdvanced": None,
    # Efficiency Nodes: positive/negative link to the Efficient Loader's outputs 1/2; the SDXL
    # sampler takes the loader's SDXL tuple instead
    "KSampler (Efficient)": "seed",
    "KSampler Adv. (Efficient)": "noise_seed",
    "KSampler SDXL (Eff.)": "noise_seed",
    # Impact Pack: the conditioning comes in a basic pipe (ToBasicPipe)
    "ImpactKSamplerBasicPipe": "seed",
    "ImpactKSamplerAdvancedBasicPipe": "noise_seed",
}
#: sigma-producing nodes with no ``scheduler`` input: the schedule is the node itself.
SCHEDULER_CLASSES = {
    "KarrasScheduler": "karras", "ExponentialScheduler": "exponential",
    "PolyexponentialScheduler": "polyexponential", "VPScheduler": "vp",
    "AlignYourStepsScheduler": "align_your_steps", "SDTurboScheduler": "sd_turbo",
    "BetaSamplingScheduler": "beta", "LaplaceScheduler": "laplace", "GITSScheduler": "gits",
    "OptimalStepsScheduler": "optimal_steps",
}
SEED_INPUTS = ("seed", "noise_seed")

#: one sampler's settings and the pieces of its positive prompt (None: not found)
Found = tuple[SamplerInfo, list[Piece] | None]


def _sampler_ids(g: GraphValues) -> list[str]:
    """Known samplers, plus unknown nodes shaped like one (a seed and a positive input)."""
    ids = []
    for nid in g.order:
        ct, inputs = g.cls(nid), g.inputs(nid)
        if ct in SAMPLER_SEED_INPUT:
            ids.append(nid)
        elif link(inputs.get("positive")) and any(k in inputs for k in SEED_INPUTS):
            ids.append(nid)
        elif link(inputs.get("noise")) and link(inputs.get("guider")):
            ids.append(nid)
    return ids


def _seeded_ids(g: GraphValues) -> list[str]:
    """Without any sampler, nodes holding a seed stand in (weight-free test graphs)."""
    return [nid for nid in g.order
            if any(as_int(g.value(nid, k)[0]) is not None for k in SEED_INPUTS)]


def _schedule(g: GraphValues, nid: str) -> tuple[int | None, str | None, float | None]:
    """Steps, scheduler and denoise of a sampler, from itself or from its ``sigmas`` chain."""
    steps = as_int(g.value(nid, "steps")[0])
    scheduler = as_str(g.value(nid, "scheduler")[0])
    denoise = as_float(g.value(nid, "denoise")[0])
    sigmas = g.linked_node(nid, "sigmas")
    for _ in range(MAX_DEPTH):
        if sigmas is None:
            break
        s_inputs = g.inputs(sigmas)
        if "steps" in s_inputs or "scheduler" in s_inputs or g.cls(sigmas) in SCHEDULER_CLASSES:
            steps = steps if steps is not None else as_int(g.value(sigmas, "steps")[0])
            scheduler = (as_str(g.value(sigmas, "scheduler")[0])
                         or SCHEDULER_CLASSES.get(g.cls(sigmas)))
            if denoise is None:
                denoise = as_float(g.value(sigmas, "denoise")[0])
            break
        nxt = g.linked_node(sigmas, "sigmas")  # SplitSigmas, FlipSigmas...
        sigmas = nxt if nxt != sigmas else None
    return steps, scheduler, denoise


def _sampler(g: GraphValues, cond: Conditioning, nid: str) -> Found:
    """One sampler's settings and its positive prompt pieces."""
    ct, inputs = g.cls(nid), g.inputs(nid)
    seed = seed_path = None
    cfg_node = cond_node = nid
    pos_name, neg_name = "positive", "negative"
    noise = g.linked_node(nid, "noise")
    if noise is not None:
        key = next((k for k in SEED_INPUTS if k in g.inputs(noise)), None)
        if key is not None:
            seed, seed_path = g.value(noise, key)
        elif g.cls(noise) != "DisableNoise":
            g.warn(f"comfyui: no seed found in noise node {noise} ({g.cls(noise)})")
    else:
        key = SAMPLER_SEED_INPUT.get(ct) or next((k for k in SEED_INPUTS if k in inputs), None)
        if key is not None:
            seed, seed_path = g.value(nid, key)
    guider = g.linked_node(nid, "guider")
    if guider is not None:
        cfg_node = cond_node = guider
        g_inputs = g.inputs(guider)
        if "positive" in g_inputs:
            pass
        elif "conditioning" in g_inputs:  # BasicGuider: no negative, no cfg
            pos_name, neg_name = "conditioning", ""
        elif "cond1" in g_inputs:  # DualCFGGuider
            pos_name = "cond1"
        else:
            g.warn(f"comfyui: cannot read guider {guider} ({g.cls(guider)})")
            pos_name = neg_name = ""
    bundle = next((k for k in ("sdxl_tuple", "basic_pipe") if link(inputs.get(k))), None)
    if guider is None and "positive" not in inputs and bundle is not None:
        positive, negative = cond.bundle_texts(nid, bundle)
    else:
        positive = cond.texts(cond_node, pos_name) if pos_name else None
        if pos_name == "cond1":  # DualCFGGuider: both conditionings make the image
            extra = cond.texts(cond_node, "cond2")
            positive = None if positive is None or extra is None else positive + extra
        negative = cond.texts(cond_node, neg_name) if neg_name else None
    cfg = as_float(g.value(cfg_node, "cfg")[0])
    if cfg is None:
        cfg = as_float(g.value(cfg_node, "cfg_conds")[0])
    steps, scheduler, denoise = _schedule(g, nid)
    sampler_name = as_str(g.value(nid, "sampler_name")[0])
    sampler_node = g.linked_node(nid, "sampler")
    if sampler_name is None and sampler_node is not None:
        sampler_name = as_str(g.value(sampler_node, "sampler_name")[0])

    seed_int = as_int(seed)
    info = SamplerInfo(
        node_id=nid, class_type=ct, seed=seed_int, steps=steps, cfg=cfg,
        sampler=sampler_name, scheduler=scheduler, denoise=denoise,
        prompt=join(positive), negative_prompt=join(negative),
        seed_inputs=((seed_path,) if seed_path is not None and seed_int is not None else ()))
    return info, positive


def _seeded_node(g: GraphValues, nid: str) -> Found:
    """A stand-in 'sampler' for a graph whose only randomness is a node's seed input."""
    key = next(k for k in SEED_INPUTS if as_int(g.value(nid, k)[0]) is not None)
    seed, path = g.value(nid, key)
    pieces = None
    for name in ("text", "prompt"):
        text, tpath = g.value(nid, name)
        if isinstance(text, str):
            pieces = [Piece(text, tpath or (nid, name))]
            break
    info = SamplerInfo(node_id=nid, class_type=g.cls(nid), seed=as_int(seed),
                       steps=as_int(g.value(nid, "steps")[0]),
                       prompt=join(pieces), seed_inputs=((path,) if path else ()))
    return info, pieces


def find_samplers(g: GraphValues) -> tuple[list[Found], set[str]]:
    """All samplers, primary first: the first (upstream) one whose output is saved.

    Then the other saved samplers, then unsaved ones, each group in execution order. Also
    returns the ids of every sampler (or seeded stand-in) found.
    """
    sampler_ids = _sampler_ids(g)
    if sampler_ids:
        cond = Conditioning(g)
        found = [_sampler(g, cond, nid) for nid in sampler_ids]
    else:
        sampler_ids = _seeded_ids(g)
        found = [_seeded_node(g, nid) for nid in sampler_ids]
    outputs = output_nodes(g.graph)
    if outputs:  # saved ones first (stable: each group stays in execution order)
        reach = upstream(g.graph, outputs)
        found.sort(key=lambda item: item[0].node_id not in reach)
    return found, set(sampler_ids)
