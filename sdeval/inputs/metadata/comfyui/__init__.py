"""ComfyUI: prompt, seed and sampler settings from the API-format graph in the ``prompt`` chunk.

ComfyUI records no "prompt" or "seed" field, only the graph that made the image
(``{node_id: {"class_type", "inputs"}}``, links ``[source_id, output_index]``), so the values are
found by walking it backwards from the samplers (REFERENCE.md §3). Graphs are user-built and may
be odd or broken: everything unknown becomes a warning, never an exception. The walk also records
*where* seeds and prompt texts live (``SamplerInfo.seed_inputs``, :func:`find_prompt_inputs`) so the
regeneration loop can edit exactly those inputs and resubmit the graph.

One module per question asked of the graph (the graph itself is :mod:`sdeval.formats.comfyui_graph`):
:mod:`.values` (literal values behind links), :mod:`.text` (the string any text node makes),
:mod:`.conditioning` (prompt texts), :mod:`.choice` (which saver wrote the file),
:mod:`.samplers` (seed, steps, cfg, schedule; which sampler is the primary), :mod:`.size` (the
latent the primary starts from: ``width``/``height``), :mod:`.output_size` (what the saving node
writes: ``output_width``/``output_height``), :mod:`.models` (checkpoint, VAE, LoRAs).
"""

from __future__ import annotations

from sdeval.formats.comfyui_graph import downstream
from sdeval.inputs.metadata._common import dedupe, load_json
from sdeval.inputs.metadata.comfyui.choice import choose, writers
from sdeval.inputs.metadata.comfyui.models import lora_stack, model_name, vae_name
from sdeval.inputs.metadata.comfyui.output_size import output_size, resized_after_decode
from sdeval.inputs.metadata.comfyui.samplers import find_samplers
from sdeval.inputs.metadata.comfyui.size import fallback_size, latent_size
from sdeval.inputs.metadata.comfyui.values import GraphValues
from sdeval.inputs.metadata.types import GenerationMetadata


def walk_graph(graph: dict, image_size: tuple[int, int] | None = None) -> GenerationMetadata:
    """Read prompt, seed, size, model, VAE, LoRAs and every sampler from an API-format graph.

    ``image_size``: the file's own size, which tells apart the saving nodes of a graph that
    saves several images (:mod:`.choice`).
    """
    g = GraphValues(graph)
    if not g.graph:
        return GenerationMetadata(source="none", warnings=dedupe(g.warnings))
    found, sampler_ids = find_samplers(g)
    samplers = [info for info, _ in found]
    choice = choose(g, found, sampler_ids, image_size)
    primary = samplers[0] if samplers else None
    if choice is not None and choice.primary is not None:
        primary = choice.primary  # fields the candidate samplers disagree on are None
        samplers = ([s for s in samplers if s.node_id == primary.node_id]
                    + [s for s in samplers if s.node_id != primary.node_id])
        savers = list(choice.savers)
        output = choice.output
    else:
        output = output_size(g, primary.node_id if primary is not None else None, sampler_ids)
        fed = downstream(g.graph, primary.node_id) if primary is not None else None
        savers = [s for s in writers(g) if fed is None or s in fed]
    size = None
    if primary is not None:
        size = latent_size(g, primary.node_id, sampler_ids - {primary.node_id})
    size = size or fallback_size(g)
    start = primary.node_id if primary is not None else ""
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
        model=model_name(g, start),
        vae=vae_name(g, savers),
        loras=lora_stack(g, start),
        output_resized=resized_after_decode(g, savers),
        samplers=tuple(samplers),
        warnings=dedupe(g.warnings),
    )


def parse_comfyui(prompt_json_text: str, *, max_json_bytes: int | None = None,
                  image_size: tuple[int, int] | None = None) -> GenerationMetadata:
    """Parse the ``prompt`` chunk text; malformed or oversize JSON gives a warning, not an error."""
    graph, problem = load_json(prompt_json_text, "comfyui 'prompt'", max_json_bytes)
    if problem is not None:
        return GenerationMetadata(source="none", warnings=(problem,))
    return walk_graph(graph, image_size)
def find_prompt_inputs(graph: dict) -> list[tuple[str, str]]:
    """``(node_id, input_name)`` of each literal text feeding the primary's positive prompt.

    These are the inputs to rewrite when a gate asks to regenerate with a changed prompt; texts
    reached through primitive nodes point at the primitive's input.
    """
    g = GraphValues(graph)
    if not g.graph:
        return []
    found, _ = find_samplers(g)
    if not found or not found[0][1]:
        return []
    return list(dict.fromkeys(piece.path for piece in found[0][1]))


def find_prompt_pieces(graph: dict) -> list[tuple[tuple[str, str], str]]:
    """``((node_id, input_name), text)`` for each text of the primary's positive prompt: the input
    to rewrite and the text it makes now (for a computed text — a concatenation — the encoder's
    input, whose link a rewrite replaces with the new literal text)."""
    g = GraphValues(graph)
    if not g.graph:
        return []
    found, _ = find_samplers(g)
    if not found or not found[0][1]:
        return []
    return list({piece.path: piece.text for piece in found[0][1]}.items())
