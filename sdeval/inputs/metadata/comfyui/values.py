"""One graph being read: its nodes, its warnings, and the literal value behind an input.

A value the reader wants (a seed, a prompt, a width) is often not written on the node that uses
it but on a primitive node linked to it, or built by ``StringConcatenate``; :meth:`GraphValues.value`
follows those links and says which input really holds the value, so the regeneration can edit it.
"""

from __future__ import annotations

from typing import Any

from sdeval.formats.comfyui_graph import InputPath, execution_order, link, linked_node, read_nodes

#: inputs a primitive-like node keeps its value in, in the order they are tried.
PRIMITIVE_INPUTS = ("value", "string", "text", "seed", "noise_seed", "int", "float", "number",
                    "prompt")
#: the longest link chain followed (primitive chains, sigma chains, model chains).
MAX_DEPTH = 256
#: the longest text a graph may build by concatenation (a prompt is a few hundred characters;
#: 22 concatenations of one node with itself would build 4 million)
MAX_TEXT_CHARS = 1 << 16
#: the most nodes a graph is read with (real workflows have tens to a few hundred; walking a
#: 100,000-node file would cost seconds per image for nothing)
MAX_NODES = 10_000


class GraphValues:
    """The readable nodes of one graph (in execution order), the warnings, and value lookups."""

    def __init__(self, graph: Any) -> None:
        self.graph, notes = read_nodes(graph)
        self.warnings: list[str] = [f"comfyui: {note}" for note in notes]
        if len(self.graph) > MAX_NODES:
            self.warn(f"comfyui: graph has {len(self.graph)} nodes, more than {MAX_NODES}: not read")
            self.graph = {}
        #: StringConcatenate node -> the text it builds (each node computed once, however many
        #: inputs share it: fan-out must not make the walk exponential)
        self._concat: dict[str, str | None] = {}
        self.order, cyclic = execution_order(self.graph)
        if cyclic:
            self.warn("comfyui: cycle in links among nodes " + ", ".join(cyclic))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def cls(self, node_id: str) -> str:
        return self.graph[node_id]["class_type"] if node_id in self.graph else "?"

    def inputs(self, node_id: str) -> dict[str, Any]:
        return self.graph[node_id]["inputs"] if node_id in self.graph else {}

    def linked_node(self, node_id: str, name: str) -> str | None:
        return linked_node(self.graph, node_id, name)

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
            source = link(value)
            if source is None:
                return value, path
            src = source[0]
            if src not in self.graph:
                self.warn(f"comfyui: unresolved link at {path[0]}.{path[1]} -> node {src} "
                          "(no such node)")
                return None, None
            if src in seen:
                return None, None  # a cycle, reported with the execution order
            inputs = self.inputs(src)
            name = next((k for k in PRIMITIVE_INPUTS if k in inputs), None)
            if name is None and self.cls(src) == "StringConcatenate" and len(seen) < 32:
                if src not in self._concat:
                    self._concat[src] = self._concatenate(src, seen | {src})
                if self._concat[src] is not None:
                    return self._concat[src], None
            if name is None:
                self.warn(f"comfyui: unresolved link at {path[0]}.{path[1]} -> node {src} "
                          f"({self.cls(src)})")
                return None, None
            value, path, seen = inputs[name], (src, name), seen | {src}
        self.warn(f"comfyui: link chain deeper than {MAX_DEPTH} nodes at {path[0]}.{path[1]}; "
                  "not followed")
        return None, None

    def _concatenate(self, src: str, seen: frozenset[str]) -> str | None:
        inputs = self.inputs(src)
        a, b, d = (self.resolve(inputs.get(k), (src, k), seen)[0] for k in ("string_a", "string_b", "delimiter"))
        if not (isinstance(a, str) and isinstance(b, str)):
            return None
        d = d if isinstance(d, str) else ""
        if len(a) + len(d) + len(b) > MAX_TEXT_CHARS:
            self.warn(f"comfyui: StringConcatenate node {src} builds more than {MAX_TEXT_CHARS} characters; "
                      "the text is not used")
            return None
        return a + d + b
