"""The ComfyUI graph module shared by the metadata reader and the regeneration's mutations."""

from __future__ import annotations

import copy

import pytest

from sdeval.formats.comfyui_graph import (GraphError, check_api_graph, downstream, execution_order, get_input,
                                          insert_face_nodes, is_output_class, link, linked_node, node_inputs,
                                          output_nodes, read_nodes, set_input, unwrap_post_body, upstream)
from sdeval.gates.mutations import GraphPlan
from sdeval.inputs.metadata.comfyui import walk_graph


def _node(class_type: str, **inputs: object) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def graph() -> dict:
    return {
        "10": _node("SaveImage", images=["8", 0], filename_prefix="x"),
        "8": _node("VAEDecode", samples=["3", 0], vae=["4", 2]),
        "3": _node("KSampler", seed=5, model=["4", 0], positive=["6", 0], latent_image=["5", 0]),
        "6": _node("CLIPTextEncode", text="a fox", clip=["4", 1]),
        "5": _node("EmptyLatentImage", width=64, height=64),
        "4": _node("CheckpointLoaderSimple", ckpt_name="m.safetensors"),
        "20": _node("CLIPTextEncode", text="unused", clip=["4", 1]),
    }


@pytest.mark.parametrize("value, expected", [
    (["4", 0], ("4", 0)), ([4, 1], ("4", 1)), (("7", 2), ("7", 2)),
    ([True, 0], None), (["4", False], None), (["4", 0, 1], None), (["4", "0"], None), ("4", None), (None, None),
])
def test_link_is_a_pair_of_node_id_and_output_index(value, expected):
    assert link(value) == expected


def test_execution_order_is_upstream_first_with_numeric_ties_and_cycles_last():
    order, cyclic = execution_order(graph())
    assert order == ["4", "5", "6", "3", "8", "10", "20"] and cyclic == []
    looped = graph()
    looped["30"] = _node("X", a=["31", 0])
    looped["31"] = _node("X", a=["30", 0])
    looped["2"] = _node("X", a=["2", 0])  # a self-loop is a cycle too
    order, cyclic = execution_order(looped)
    assert cyclic == ["2", "30", "31"] and order[-3:] == cyclic


def test_upstream_and_output_nodes():
    g = graph()
    g["11"] = _node("PreviewImage", images=["99", 0])  # a link to a node that is not there
    g["12"] = _node("Image Save", images=["8", 0])
    assert output_nodes(g) == ["10", "11", "12"]
    assert is_output_class("MySaveNode") and not is_output_class("KSampler")
    assert upstream(g, ["10"]) == {"10", "8", "3", "4", "5", "6"}
    assert upstream(g, ["11"]) == {"11"}
    assert linked_node(g, "10", "images") == "8" and linked_node(g, "11", "images") is None


def test_inputs_get_set_and_odd_nodes():
    g = graph()
    assert get_input(g, ("3", "seed")) == 5 and get_input(g, ("nope", "seed")) is None
    set_input(g, ("3", "seed"), 6)
    assert g["3"]["inputs"]["seed"] == 6
    g["7"] = {"class_type": "Odd", "inputs": ["not", "an", "object"]}
    assert node_inputs(g, "7") == {} and upstream(g, ["7"]) == {"7"}


def test_post_body_and_ui_workflow_detection_is_shared_by_reader_and_mutations():
    body = {"prompt": graph(), "client_id": "abc"}
    assert unwrap_post_body(body) is body["prompt"]
    assert check_api_graph(body) is body["prompt"]
    assert walk_graph(body).seed == 5
    own_node = {"prompt": {"class_type": "PrimitiveNode", "inputs": {}}, **graph()}
    assert unwrap_post_body(own_node) is own_node  # a node named "prompt": a graph, not a body
    ui = {"nodes": [], "links": []}
    with pytest.raises(GraphError, match="UI workflow"):
        check_api_graph(ui)
    nodes, notes = read_nodes(ui)
    assert nodes == {} and "UI workflow" in notes[0]
    nodes, notes = read_nodes({"1": {"inputs": {}}, 2: _node("X", a=1), "3": {"class_type": "Y", "inputs": [1]}})
    assert set(nodes) == {"2", "3"} and nodes["3"]["inputs"] == {} and notes == ["node 1 has no class_type; skipped"]


def test_a_node_with_a_list_for_inputs_is_a_row_reason_not_a_crash():
    g = graph()
    g["40"] = {"class_type": "PreviewImage", "inputs": ["x"]}
    plan = GraphPlan.from_graph(g)
    assert plan.seed == 5
    face = {"1": _node("FaceRestore", image="$image")}
    out = insert_face_nodes(g, face)
    assert out["10"]["inputs"]["images"] == ["sdeval_face_1", 0] and out["40"] == g["40"]


def test_insert_face_nodes_hooks_every_saver_and_leaves_the_input_alone():
    g = graph()
    g["11"] = _node("SaveImage", images=["8", 0], filename_prefix="y")
    before = copy.deepcopy(g)
    out = insert_face_nodes(g, {"a": _node("Restore", image="$image", model=["b", 0]), "b": _node("Loader")})
    assert g == before
    assert out["10"]["inputs"]["images"] == ["sdeval_face_a", 0]
    assert out["11"]["inputs"]["images"] == ["sdeval_face_a_1", 0]
    assert out["sdeval_face_a_1"]["inputs"] == {"image": ["8", 0], "model": ["sdeval_face_b_1", 0]}
    with pytest.raises(GraphError, match="several end nodes"):
        insert_face_nodes(g, {"a": _node("A", image="$image"), "b": _node("B", image="$image")})


def test_downstream_is_everything_a_node_feeds() -> None:
    graph = {"a": {"class_type": "A", "inputs": {}},
             "b": {"class_type": "B", "inputs": {"x": ["a", 0]}},
             "c": {"class_type": "C", "inputs": {"x": ["b", 0], "y": ["a", 1]}},
             "d": {"class_type": "D", "inputs": {"x": ["d", 0]}},  # a self-loop
             "e": {"class_type": "E", "inputs": {"x": ["missing", 0]}}}
    assert downstream(graph, "a") == {"a", "b", "c"}
    assert downstream(graph, "c") == {"c"} and downstream(graph, "d") == {"d"}
    assert downstream(graph, "missing") == set()
