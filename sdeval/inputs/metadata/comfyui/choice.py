"""Which sampler made *this* file, when a graph saves several images.

ComfyUI writes the whole graph into every image it saves, and does not record which saving node
wrote the file. A graph with four ``SaveImage`` nodes fed by four prompts (an A/B/C/D comparison)
therefore holds four candidate prompts for each of its files. The savers whose computed output
size matches the file's size are the candidates (when the size is known); when their first
samplers disagree on a field (prompt, seed...), that field is unknown with a warning naming the
savers, never the first one's value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sdeval.formats.comfyui_graph import link, node_sort_key, output_nodes, upstream
from sdeval.inputs.metadata.comfyui.output_size import saved_size
from sdeval.inputs.metadata.comfyui.samplers import Found
from sdeval.inputs.metadata.comfyui.values import GraphValues
from sdeval.inputs.metadata.types import SamplerInfo

#: the most saving nodes compared one by one (each costs a walk of the graph); more: the first
#: saved sampler stands, as for a graph with one saver.
MAX_SAVERS = 64
#: sampler fields that must agree between candidate savers to be reported.
AGREED_FIELDS = ("prompt", "negative_prompt", "seed", "steps", "cfg", "sampler", "scheduler",
                 "denoise")


@dataclass(frozen=True)
class Choice:
    """The sampler standing for the file (fields the candidates disagree on set to None), the
    saving nodes that may have written it, and their common output size (None: unknown)."""

    primary: SamplerInfo | None
    savers: tuple[str, ...]
    output: tuple[int, int] | None
    #: True when several samplers could have made the file (some fields were dropped)
    ambiguous: bool = False


def writers(g: GraphValues) -> list[str]:
    """The nodes that write the image files (previews only when nothing else saves)."""
    savers = [nid for nid in output_nodes(g.graph)
              if any(link(g.inputs(nid).get(k)) for k in ("images", "image"))]
    return [nid for nid in savers if "Preview" not in g.cls(nid)] or savers


def choose(g: GraphValues, found: list[Found], sampler_ids: set[str],
           image_size: tuple[int, int] | None) -> Choice | None:
    """The sampler behind the file among several saving nodes; None: one saver (or too many),
    the first saved sampler stands."""
    savers = sorted(writers(g), key=node_sort_key)
    if len(savers) < 2 or len(savers) > MAX_SAVERS or not found:
        return None
    first: dict[str, SamplerInfo] = {}
    sizes: dict[str, tuple[int, int] | None] = {}
    notes: dict[str, list[str]] = {}
    for saver in savers:
        reach = upstream(g.graph, [saver])
        info = next((item[0] for item in found if item[0].node_id in reach), None)
        if info is None:
            continue
        first[saver] = info
        mark = len(g.warnings)
        sizes[saver] = saved_size(g, saver, sampler_ids)
        notes[saver] = g.warnings[mark:]
        del g.warnings[mark:]  # only the candidates' size warnings are kept
    if not first:
        return None
    candidates = list(first)
    if image_size is not None:
        matching = [s for s in candidates if sizes[s] is None or sizes[s] == image_size]
        if matching:
            candidates = matching
        else:
            listed = ", ".join(f"{s} {sizes[s][0]}x{sizes[s][1]}" for s in candidates if sizes[s])
            g.warn(f"comfyui: no saving node's output size matches the image's "
                   f"{image_size[0]}x{image_size[1]} ({listed})")
    for saver in candidates:
        g.warnings.extend(notes[saver])
    primaries = list(dict.fromkeys(first[s].node_id for s in candidates))
    by_id = {first[s].node_id: first[s] for s in candidates}
    primary = by_id[primaries[0]]
    known = {sizes[s] for s in candidates}
    output = next(iter(known)) if len(known) == 1 else None
    if len(known) > 1:
        listed = ", ".join(f"{s} ({g.cls(s)}) " + (f"{sizes[s][0]}x{sizes[s][1]}" if sizes[s] else "unknown")
                           for s in candidates[:8])
        g.warn(f"comfyui: output size unknown: image-saving nodes disagree: {listed}")
    if len(primaries) == 1:
        return Choice(primary, tuple(candidates), output)
    changes = {}
    for name in AGREED_FIELDS:
        values = {getattr(by_id[p], name) for p in primaries}
        if len(values) > 1:
            changes[name] = None
    if changes:
        shown = ", ".join(f"{s} (sampler {first[s].node_id})" for s in candidates[:8])
        g.warn(f"comfyui: the graph saves images from {len(primaries)} samplers that differ in "
               f"{', '.join(changes)}; which one made this file is not recorded (saving nodes "
               f"{shown}): {', '.join(changes)} unknown")
    return Choice(replace(primary, **changes), tuple(candidates), output, ambiguous=bool(changes))
