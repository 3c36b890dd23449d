"""What changes between one generation and the next: seeds, prompt wording, face restoration.

Pure functions over API-format ComfyUI graphs and prompt text, shared by the regeneration loop
and its backends, so that a dry run shows exactly what a real run submits. The graph itself
(links, savers, upstream, input get/set, face-node insertion) is :mod:`sdeval.formats.comfyui_graph`,
the same module the metadata reader walks with.

- Seeds come from a deterministic sequence derived from the original seed (sha256, 64-bit, or
  32-bit for AUTOMATIC1111): a rerun of the same command asks for the same seeds, which is what
  makes an interrupted run resumable, and a seed already used is skipped, because ComfyUI answers
  an identical graph from its cache without making a new image.
- The graph is edited where the metadata reader found the values (``SamplerInfo.seed_inputs``,
  :func:`find_prompt_pieces`), so "the seed" means the same input for the reader and the loop.
- The policy's ``[regenerate]`` table (validated here, stored on :class:`Policy`) says how to
  reword a prompt and how to restore a face.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdeval.formats.comfyui_graph import (IMAGE_PLACEHOLDER, GraphError, InputPath, check_api_graph, output_nodes,
                                          set_input, upstream)
from sdeval.inputs.metadata.comfyui import find_prompt_pieces, walk_graph

SEED_SALT = "sdeval-reseed-v1"
#: SaveImage's filename_prefix for regenerated images: ComfyUI writes them to output/sdeval/...
PREFIX_ROOT = "sdeval"
REPROMPT_STRATEGIES = ("emphasis", "append", "template")
REGENERATE_KEYS = ("reprompt", "emphasis_weight", "emphasis_step", "emphasis_max", "append_terms", "template",
                   "restore_face_workflow", "restore_face_nodes", "restore_face_output")
#: the most JSON a workflow file may hold (graphs are small; this only stops accidents)
MAX_WORKFLOW_BYTES = 16 * 2 ** 20


# ------------------------------------------------------------------------------------------ seeds

def _hash_seed(*parts: object, bits: int) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in (SEED_SALT, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2 ** bits)


def seed_candidates(original: int | None, bits: int = 64, salt: str = "") -> Iterator[int]:
    """The endless deterministic sequence of seeds that follow ``original`` (all in 0..2**bits-1).

    ``salt`` (the image's sha256) keeps images that share a graph and seed (one batch) from
    being regenerated into the same pictures.
    """
    k = 1
    while True:
        yield _hash_seed(original, salt, k, bits=bits)
        k += 1


def next_seed(original: int | None, used: Collection[int], bits: int = 64, salt: str = "") -> int:
    """The first seed of ``original``'s sequence not in ``used`` (which holds the original too)."""
    for seed in seed_candidates(original, bits, salt):
        if seed not in used:
            return seed
    raise AssertionError("unreachable")  # pragma: no cover


def companion_seed(other_original: int, new_primary: int, bits: int = 64) -> int:
    """A new seed for a second sampler (hires pass, refiner) whose seed differed from the primary's:
    tied to the new primary seed, so each attempt changes every sampler and stays reproducible."""
    return _hash_seed("companion", other_original, new_primary, bits=bits)


# ------------------------------------------------------------------------------------------ prompts

@dataclass(frozen=True)
class RepromptStrategy:
    """How ``reprompt`` rewords the positive prompt; ``level`` counts reprompts in the lineage.

    ``emphasis`` wraps the text in ComfyUI/A1111 weight syntax, ``(text:1.2)``, one ``step`` heavier
    per reprompt up to ``max_weight``; ``append`` adds ``terms`` not already present; ``template``
    puts the text into ``template`` at ``{prompt}``. The last two do the same at every level, so a
    further reprompt only brings a new seed.
    """

    kind: str = "emphasis"
    weight: float = 1.2
    step: float = 0.1
    max_weight: float = 1.5
    terms: tuple[str, ...] = ("highly detailed", "sharp focus")
    template: str = "{prompt}"

    def apply(self, text: str, level: int) -> str:
        if level <= 0 or not text.strip():
            return text
        if self.kind == "emphasis":
            w = round(min(self.max_weight, self.weight + self.step * (level - 1)), 3)
            return f"({text.strip()}:{w:g})"
        if self.kind == "append":
            lower = text.lower()
            extra = [t for t in self.terms if t.strip() and t.lower() not in lower]
            return text.rstrip().rstrip(",") + ", " + ", ".join(extra) if extra else text
        return self.template.replace("{prompt}", text.strip())

    def describe(self) -> str:
        if self.kind == "emphasis":
            return f"emphasis (text:{self.weight:g}) +{self.step:g} per reprompt, at most {self.max_weight:g}"
        if self.kind == "append":
            return "append " + ", ".join(self.terms)
        return f"template {self.template!r}"


# ------------------------------------------------------------------------------------------ [regenerate]

@dataclass(frozen=True)
class FaceRestore:
    """A face-restoration step: a whole workflow, or nodes inserted between decoder and saver."""

    workflow: Mapping[str, Any] | None = None
    workflow_path: str | None = None
    nodes: Mapping[str, Any] | None = None
    output: str | None = None

    def describe(self) -> str:
        if self.workflow is not None:
            return f"workflow {self.workflow_path}"
        return "nodes " + ", ".join(f"{k} ({v.get('class_type')})" for k, v in (self.nodes or {}).items())


@dataclass(frozen=True)
class RegenerateConfig:
    """The policy's ``[regenerate]`` table, loaded (workflow files read)."""

    reprompt: RepromptStrategy = field(default_factory=RepromptStrategy)
    restore_face: FaceRestore | None = None

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> RegenerateConfig:
        """From a table already checked by :func:`validate_regenerate_table`."""
        t = dict(table or {})
        defaults = RepromptStrategy()
        strategy = RepromptStrategy(
            kind=t.get("reprompt", "emphasis"), weight=float(t.get("emphasis_weight", defaults.weight)),
            step=float(t.get("emphasis_step", defaults.step)),
            max_weight=float(t.get("emphasis_max", defaults.max_weight)),
            terms=tuple(t.get("append_terms", defaults.terms)), template=t.get("template", "{prompt}"))
        face = None
        if t.get("restore_face_workflow"):
            path = str(t["restore_face_workflow"])
            face = FaceRestore(workflow=load_workflow(path), workflow_path=path)
        elif t.get("restore_face_nodes"):
            face = FaceRestore(nodes=t["restore_face_nodes"], output=t.get("restore_face_output"))
        return cls(reprompt=strategy, restore_face=face)


def validate_regenerate_table(value: Any, error: Callable[[str, str], Exception],
                              base_dir: Path | None = None) -> dict[str, Any]:
    """Check a ``[regenerate]`` policy table; ``error(message, key)`` builds the exception to raise.

    Relative workflow paths are made relative to ``base_dir`` (the policy file's folder).
    Returns the table with paths resolved, ready for :meth:`RegenerateConfig.from_table`.
    """
    if not isinstance(value, dict):
        raise error("'regenerate' must be a table ([regenerate])", "regenerate")
    out: dict[str, Any] = {}
    for key, v in value.items():
        if key not in REGENERATE_KEYS:
            import difflib

            close = difflib.get_close_matches(key, REGENERATE_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise error(f"unknown key '{key}' in [regenerate]{hint} (expected {', '.join(REGENERATE_KEYS)})", key)
        if key == "reprompt":
            if v not in REPROMPT_STRATEGIES:
                raise error(f"[regenerate] reprompt must be one of {', '.join(REPROMPT_STRATEGIES)}, got {v!r}", key)
        elif key in ("emphasis_weight", "emphasis_step", "emphasis_max"):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 10:
                raise error(f"[regenerate] {key} must be a number between 0 and 10, got {v!r}", key)
            v = float(v)
        elif key == "append_terms":
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not v or not all(isinstance(t, str) and t.strip() for t in v):
                raise error("[regenerate] append_terms must be a non-empty list of words or phrases", key)
        elif key == "template":
            if not isinstance(v, str) or "{prompt}" not in v:
                raise error("[regenerate] template must be a string containing {prompt}", key)
        elif key == "restore_face_workflow":
            if not isinstance(v, str) or not v:
                raise error("[regenerate] restore_face_workflow must be the path of an API-format JSON file", key)
            p = Path(v).expanduser()
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
            try:
                load_workflow(str(p))
            except GraphError as exc:
                raise error(f"[regenerate] restore_face_workflow: {exc}", key) from exc
            v = str(p)
        elif key == "restore_face_nodes":
            _check_face_nodes(v, error)
        elif key == "restore_face_output":
            if not isinstance(v, str) or v not in (value.get("restore_face_nodes") or {}):
                raise error("[regenerate] restore_face_output must name one of the restore_face_nodes", key)
        out[key] = v
    if "restore_face_workflow" in out and "restore_face_nodes" in out:
        raise error("[regenerate] give restore_face_workflow or restore_face_nodes, not both", "restore_face_nodes")
    return out


def _check_face_nodes(nodes: Any, error: Callable[[str, str], Exception]) -> None:
    key = "restore_face_nodes"
    if not isinstance(nodes, dict) or not nodes:
        raise error("[regenerate] restore_face_nodes must be a table of nodes "
                    "{ID = {class_type = ..., inputs = {...}}}", key)
    uses_image = False
    for nid, node in nodes.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise error(f"[regenerate] restore_face_nodes.{nid} needs a class_type", key)
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise error(f"[regenerate] restore_face_nodes.{nid}.inputs must be a table", key)
        unknown = [k for k in node if k not in ("class_type", "inputs", "_meta")]
        if unknown:
            raise error(f"unknown key '{unknown[0]}' in [regenerate] restore_face_nodes.{nid} "
                        "(expected class_type, inputs)", key)
        uses_image = uses_image or IMAGE_PLACEHOLDER in inputs.values()
    if not uses_image:
        raise error(f"[regenerate] restore_face_nodes: one input must be \"{IMAGE_PLACEHOLDER}\" "
                    "(the decoded image the nodes restore)", key)


# ------------------------------------------------------------------------------------------ graphs

def load_workflow(path: str) -> dict[str, Any]:
    """Read an API-format workflow file; :class:`GraphError` with a clear message otherwise."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_WORKFLOW_BYTES:  # GraphError is a ValueError: not caught as bad JSON below
            raise GraphError(f"{path} is {size} bytes; a workflow is at most {MAX_WORKFLOW_BYTES}")
        data = json.loads(p.read_text(encoding="utf-8"))
    except GraphError:
        raise
    except FileNotFoundError as exc:
        raise GraphError(f"workflow file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise GraphError(f"cannot read workflow {path}: {exc}") from exc
    except ValueError as exc:
        raise GraphError(f"workflow {path} is not valid JSON: {exc}") from exc
    return check_api_graph(data, f"workflow {path}")


@dataclass(frozen=True)
class GraphPlan:
    """Where to write seeds and prompt text in one graph, and what they held.

    ``seeds``: every seed input of a sampler that reaches a saved image, with its value, primary
    sampler first; ``prompts``: the literal texts of the primary sampler's positive prompt.
    """

    graph: Mapping[str, Any]
    seeds: tuple[tuple[InputPath, int], ...]
    prompts: tuple[tuple[InputPath, str], ...]
    savers: tuple[str, ...]

    @property
    def seed(self) -> int:
        return self.seeds[0][1]

    @property
    def prompt(self) -> str | None:
        texts = dict.fromkeys(t.strip() for _, t in self.prompts if t.strip())
        return "\n".join(texts) if self.prompts else None

    @classmethod
    def from_graph(cls, graph: Any, what: str = "the graph") -> GraphPlan:
        """Find seeds and prompt in ``graph``; :class:`GraphError` when it cannot be reseeded."""
        graph = check_api_graph(graph, what)
        meta = walk_graph(graph)
        outs = output_nodes(graph)
        reach = upstream(graph, outs) if outs else set(graph)
        seeds: list[tuple[InputPath, int]] = []
        for info in meta.samplers:
            if info.node_id not in reach or info.seed is None:
                continue
            for path in info.seed_inputs:
                if path not in (p for p, _ in seeds):
                    seeds.append((path, int(info.seed)))
        if not seeds:
            raise GraphError(f"{what} has no seed input that reaches the saved image (a seed made by a custom "
                             "node cannot be changed); pass --workflow FILE")
        # literal texts, and texts computed by string nodes (rewritten where the encoder reads them)
        prompts = tuple((p, t) for p, t in find_prompt_pieces(graph) if isinstance(t, str))
        savers = tuple(n for n in outs if "filename_prefix" in (graph[n].get("inputs") or {}))
        return cls(graph=graph, seeds=tuple(seeds), prompts=prompts, savers=savers)

    def placed(self, prompt: str | None, seed: int | None, what: str = "the workflow") -> GraphPlan:
        """This plan with ``prompt`` in every positive text input and ``seed`` in every seed input
        (for ``--workflow``: an image's own values put into someone else's graph)."""
        if prompt is None:
            raise GraphError("the image's metadata has no prompt to put into the workflow")
        if not self.prompts:
            raise GraphError(f"{what} has no positive prompt text the metadata reader can find")
        graph = copy.deepcopy(dict(self.graph))
        for path, _ in self.prompts:
            set_input(graph, path, prompt)
        seed = self.seed if seed is None else int(seed)
        for path, _ in self.seeds:
            set_input(graph, path, seed)
        return GraphPlan(graph=graph, seeds=tuple((p, seed) for p, _ in self.seeds),
                         prompts=tuple((p, prompt) for p, _ in self.prompts), savers=self.savers)

    def build(self, seed: int, reword: Callable[[str], str] | None = None, prefix: str | None = None,
              bits: int = 64) -> dict[str, Any]:
        """A fresh graph: ``seed`` on the primary's seed inputs (and on any sampler that shared the
        primary's seed), companion seeds on the others, ``reword`` applied to each prompt text,
        ``prefix`` as every saver's filename_prefix."""
        graph = copy.deepcopy(dict(self.graph))
        primary = self.seed
        for path, original in self.seeds:
            set_input(graph, path, seed if original == primary else companion_seed(original, seed, bits))
        if reword is not None:
            for path, text in self.prompts:
                set_input(graph, path, reword(text))
        if prefix is not None:
            for nid in self.savers:
                set_input(graph, (nid, "filename_prefix"), prefix)
        return graph

    def prompt_after(self, reword: Callable[[str], str] | None) -> str | None:
        if reword is None or not self.prompts:
            return self.prompt
        texts = dict.fromkeys(reword(t).strip() for _, t in self.prompts if t.strip())
        return "\n".join(texts)


def attempt_prefix(image_key: str, attempt: int) -> str:
    """SaveImage filename_prefix for one attempt: ``sdeval/regen/<image>_a02`` (output/sdeval/regen/)."""
    return f"{PREFIX_ROOT}/regen/{image_key}_a{attempt:02d}"
