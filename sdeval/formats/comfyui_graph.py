"""ComfyUI API-format graphs: links, node order, upstream walks, input get/set and graph edits.

An API-format graph is ``{node_id: {"class_type": str, "inputs": {name: value}}}`` where a value
``[source_id, output_index]`` is a link to another node's output and anything else is a literal.
The metadata reader (which walks a graph back from its samplers) and the regeneration's
mutations (which edit the inputs the reader found) both use these functions, so that "a link",
"the saved image" and "upstream" mean the same thing to both. Pure functions; nothing here reads
files or talks to a server.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Iterable, Mapping
from typing import Any

#: ``(node_id, input_name)``: where a value lives in a graph.
InputPath = tuple[str, str]
#: ``(source_node_id, output_index)``.
Link = tuple[str, int]

#: nodes that write or show images; a sampler upstream of one of these made the saved image.
#: Any class whose name holds ``Save`` or ``Preview`` counts too (:func:`is_output_class`).
OUTPUT_CLASSES = frozenset({
    "SaveImage", "PreviewImage", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveImageWebsocket",
    "SaveWEBM", "SaveVideo", "Image Save", "VHS_VideoCombine",
})
#: the marker an inserted node uses for "the image the saver was given" (:func:`insert_face_nodes`)
IMAGE_PLACEHOLDER = "$image"


class GraphError(ValueError):
    """A graph cannot be used as an API-format graph; the message says why, for the row."""


# ------------------------------------------------------------------------------------------ nodes

def link(value: Any) -> Link | None:
    """``[source_id, output_index]`` as a tuple, or None when the value is a literal."""
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and isinstance(value[0], (str, int)) and not isinstance(value[0], bool)
            and isinstance(value[1], int) and not isinstance(value[1], bool)):
        return str(value[0]), value[1]
    return None


def node_sort_key(node_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order first ("2" < "10"), then the rest as text."""
    return (0, int(node_id), "") if node_id.isascii() and node_id.isdigit() else (1, 0, node_id)


def is_node(value: Any) -> bool:
    """A node of an API-format graph: an object with a string ``class_type``."""
    return isinstance(value, dict) and isinstance(value.get("class_type"), str)


def node_inputs(graph: Mapping[str, Any], node_id: str) -> dict[str, Any]:
    """A node's ``inputs`` (empty when the node or its inputs are missing or not an object)."""
    node = graph.get(node_id)
    inputs = node.get("inputs") if isinstance(node, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def linked_node(graph: Mapping[str, Any], node_id: str, name: str) -> str | None:
    """The node an input links to, when the input is a link to a node of the graph."""
    source = link(node_inputs(graph, node_id).get(name))
    return source[0] if source and source[0] in graph else None


def get_input(graph: Mapping[str, Any], path: InputPath) -> Any:
    """The value at ``(node_id, input_name)``; None when there is none."""
    return node_inputs(graph, path[0]).get(path[1])


def set_input(graph: dict[str, Any], path: InputPath, value: Any) -> None:
    """Write ``value`` at ``(node_id, input_name)`` (the node must exist), in place."""
    graph[path[0]].setdefault("inputs", {})[path[1]] = value


# ------------------------------------------------------------------------------------------ format

def unwrap_post_body(graph: Any) -> Any:
    """The graph inside a saved ``POST /prompt`` body (``{"prompt": graph, "client_id": ...}``);
    anything else unchanged. A graph with a node of its own is never unwrapped."""
    if (isinstance(graph, dict) and isinstance(graph.get("prompt"), dict)
            and not any(isinstance(v, dict) and "class_type" in v for v in graph.values())):
        return graph["prompt"]
    return graph


def is_ui_workflow(graph: Any) -> bool:
    """The editor's workflow format (``nodes`` list + ``links``), which ComfyUI does not run."""
    return isinstance(graph, dict) and isinstance(graph.get("nodes"), list) and "links" in graph


def read_nodes(graph: Any) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The readable nodes of a graph, leniently: every node with a ``class_type`` (ids as text,
    ``inputs`` always an object), and one note for each part left out.

    For readers of untrusted metadata, which must warn and go on (:func:`check_api_graph` is the
    strict version).
    """
    graph = unwrap_post_body(graph)
    if not isinstance(graph, dict):
        return {}, [f"graph is a {type(graph).__name__}, not an object of nodes"]
    if is_ui_workflow(graph):
        return {}, ["this is a UI workflow, not an API-format graph; not read"]
    nodes: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for node_id, node in graph.items():
        node_id = str(node_id)
        if not is_node(node):
            notes.append(f"node {node_id} has no class_type; skipped")
            continue
        inputs = node.get("inputs")
        nodes[node_id] = {"class_type": node["class_type"],
                          "inputs": inputs if isinstance(inputs, dict) else {}}
    return nodes, notes


def check_api_graph(graph: Any, what: str = "graph") -> dict[str, Any]:
    """``graph`` as a dict of nodes, or :class:`GraphError` saying what is wrong with it."""
    graph = unwrap_post_body(graph)
    if is_ui_workflow(graph):
        raise GraphError(f"{what} is a UI workflow, not the API format ComfyUI runs; export it with "
                         "'Save (API Format)' (or 'Export (API)')")
    if not isinstance(graph, dict) or not graph:
        raise GraphError(f"{what} is not an API-format ComfyUI graph (an object of nodes)")
    for nid, node in graph.items():
        if not is_node(node):
            raise GraphError(f"{what}: node {nid} has no class_type (not an API-format graph)")
    return graph


# ------------------------------------------------------------------------------------------ shape

def is_output_class(class_type: str) -> bool:
    """A class that saves or shows images."""
    return class_type in OUTPUT_CLASSES or "Save" in class_type or "Preview" in class_type


def output_nodes(graph: Mapping[str, Any]) -> list[str]:
    """Nodes that save or show images, in the graph's order."""
    return [nid for nid, node in graph.items()
            if isinstance(node, dict) and is_output_class(str(node.get("class_type", "")))]


def upstream(graph: Mapping[str, Any], starts: Iterable[str]) -> set[str]:
    """Every node of the graph feeding ``starts`` (included); links to absent nodes are ignored."""
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        nid = stack.pop()
        if nid in seen or nid not in graph:
            continue
        seen.add(nid)
        stack.extend(source[0] for v in node_inputs(graph, nid).values() if (source := link(v)))
    return seen


def downstream(graph: Mapping[str, Any], start: str) -> set[str]:
    """Every node fed by ``start`` (included): one pass over the links, however many outputs ask."""
    users: dict[str, list[str]] = {}
    for nid in graph:
        for value in node_inputs(graph, nid).values():
            if (source := link(value)) and source[0] != nid:
                users.setdefault(source[0], []).append(nid)
    seen: set[str] = set()
    stack = [start] if start in graph else []
    while stack:
        nid = stack.pop()
        if nid in seen:
            continue
        seen.add(nid)
        stack.extend(users.get(nid, ()))
    return seen


def execution_order(graph: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Upstream before downstream (Kahn, ties by :func:`node_sort_key`), and the nodes on cycles,
    which come last in the order (a self-loop counts as a cycle)."""
    deps: dict[str, set[str]] = {nid: set() for nid in graph}
    users: dict[str, set[str]] = {nid: set() for nid in graph}
    for nid in graph:
        for value in node_inputs(graph, nid).values():
            source = link(value)
            if source and source[0] in graph and source[0] != nid:
                deps[nid].add(source[0])
                users[source[0]].add(nid)
            elif source and source[0] == nid:
                deps[nid].add(nid)  # never becomes ready: reported as a cycle
    pending = {nid: len(d) for nid, d in deps.items()}
    heap = [(node_sort_key(nid), nid) for nid, n in pending.items() if n == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, nid = heapq.heappop(heap)
        order.append(nid)
        for user in users[nid]:
            pending[user] -= 1
            if pending[user] == 0:
                heapq.heappush(heap, (node_sort_key(user), user))
    done = set(order)
    cyclic = sorted((nid for nid in graph if nid not in done), key=node_sort_key)
    return order + cyclic, cyclic


# ------------------------------------------------------------------------------------------ edits

def insert_face_nodes(graph: dict[str, Any], nodes: Mapping[str, Any], output: str | None = None,
                      tag: str = "sdeval_face") -> dict[str, Any]:
    """A copy of ``graph`` with ``nodes`` between each saver and the image it saves
    (:data:`IMAGE_PLACEHOLDER` in an input of ``nodes`` = that image).

    Node ids get a ``tag`` prefix so they cannot clash with the graph's; links between the
    inserted nodes are renamed accordingly. The saver then saves ``output`` (default: the inserted
    node no other inserted node reads). :class:`GraphError` when the graph has no saver to hook.
    """
    ids = {str(nid): f"{tag}_{nid}" for nid in nodes}
    if output is None:
        read = {source[0] for n in nodes.values() for v in (n.get("inputs") or {}).values()
                if (source := link(v)) is not None and source[0] in ids}
        ends = [nid for nid in ids if nid not in read]
        if len(ends) != 1:
            raise GraphError("restore_face_nodes has several end nodes; name one with restore_face_output")
        output = ends[0]
    graph = copy.deepcopy(graph)
    hooked = 0
    for saver in output_nodes(graph):
        inputs = node_inputs(graph, saver)
        source = inputs.get("images")
        if link(source) is None:
            continue
        suffix = "" if hooked == 0 else f"_{hooked}"
        for nid, node in nodes.items():
            new_inputs: dict[str, Any] = {}
            for k, v in (node.get("inputs") or {}).items():
                if v == IMAGE_PLACEHOLDER:
                    new_inputs[k] = list(source)
                elif (inner := link(v)) is not None and inner[0] in ids:
                    new_inputs[k] = [ids[inner[0]] + suffix, inner[1]]
                else:
                    new_inputs[k] = copy.deepcopy(v)
            graph[ids[str(nid)] + suffix] = {"class_type": node["class_type"], "inputs": new_inputs,
                                            "_meta": {"title": f"sdeval face restoration ({node['class_type']})"}}
        inputs["images"] = [ids[output] + suffix, 0]
        hooked += 1
    if not hooked:
        raise GraphError("the graph has no image-saving node whose input the face restoration can take")
    return graph
