"""Seeds, prompt rewording, graph edits and the [regenerate] policy table (no server)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sdeval.core.config import TomlSource
from sdeval.core.errors import PolicyError
from sdeval.formats.comfyui_graph import GraphError, check_api_graph, insert_face_nodes
from sdeval.gates import mutations
from sdeval.gates.mutations import GraphPlan, RegenerateConfig, RepromptStrategy, load_workflow, next_seed, seed_candidates
from sdeval.gates.policy import build_policy

try:
    from comfy_fake import sd_graph
except ImportError:  # run from somewhere that does not put tests/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from comfy_fake import sd_graph


def test_seed_sequence_is_deterministic_in_range_and_skips_used():
    a = [s for _, s in zip(range(50), seed_candidates(7))]
    assert a == [s for _, s in zip(range(50), seed_candidates(7))]
    assert all(0 <= s < 2 ** 64 for s in a) and len(set(a)) == 50
    assert a != [s for _, s in zip(range(50), seed_candidates(8))]
    assert [s for _, s in zip(range(5), seed_candidates(7, salt="x"))] != a[:5]
    assert next_seed(7, {7}) == a[0]
    assert next_seed(7, {7, a[0], a[1]}) == a[2]
    assert all(0 <= s < 2 ** 32 for _, s in zip(range(50), seed_candidates(7, bits=32)))


@pytest.mark.parametrize("strategy, level, expected", [
    (RepromptStrategy(), 1, "(a red fox:1.2)"),
    (RepromptStrategy(), 2, "(a red fox:1.3)"),
    (RepromptStrategy(), 9, "(a red fox:1.5)"),
    (RepromptStrategy(kind="append", terms=("sharp focus", "red")), 1, "a red fox, sharp focus"),
    (RepromptStrategy(kind="template", template="photo of {prompt}, 35mm"), 2, "photo of a red fox, 35mm"),
    (RepromptStrategy(), 0, "a red fox"),
])
def test_reprompt_strategies(strategy, level, expected):
    assert strategy.apply("a red fox", level) == expected


def hires_graph() -> dict:
    """Base KSampler (seed 5) + hires KSampler (seed 99) + an unsaved sampler, through a primitive."""
    g = sd_graph(5, "a castle")
    g["20"] = {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact",
                                                           "scale_by": 1.5}}
    g["21"] = {"class_type": "KSampler", "inputs": {**g["3"]["inputs"], "seed": 99, "latent_image": ["20", 0],
                                                    "denoise": 0.5}}
    g["8"]["inputs"]["samples"] = ["21", 0]
    g["30"] = {"class_type": "KSampler", "inputs": {**g["3"]["inputs"], "seed": 5}}  # saved by nobody
    g["3"]["inputs"]["seed"] = ["40", 0]
    g["40"] = {"class_type": "PrimitiveNode", "inputs": {"value": 5}}
    return g


def test_graph_plan_reseeds_every_saved_sampler_and_keeps_the_rest():
    g = hires_graph()
    plan = GraphPlan.from_graph(g)
    assert plan.seeds == ((("40", "value"), 5), (("21", "seed"), 99))
    assert plan.prompts == ((("6", "text"), "a castle"),) and plan.savers == ("9",)
    out = plan.build(1234, lambda t: t + "!", "sdeval/regen/x_a01")
    assert out["40"]["inputs"]["value"] == 1234
    assert out["21"]["inputs"]["seed"] not in (99, 1234, 5)
    assert out["30"]["inputs"]["seed"] == 5  # does not reach the saved image
    assert out["6"]["inputs"]["text"] == "a castle!" and out["7"]["inputs"]["text"] == "blurry"
    assert out["9"]["inputs"]["filename_prefix"] == "sdeval/regen/x_a01"
    assert g["40"]["inputs"]["value"] == 5  # the input graph is not modified
    assert plan.build(1234)["21"]["inputs"]["seed"] == out["21"]["inputs"]["seed"]  # reproducible


def test_custom_sampler_noise_seed_and_placing_into_a_workflow():
    g = {"1": {"class_type": "RandomNoise", "inputs": {"noise_seed": 11}},
         "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["9", 1]}},
         "3": {"class_type": "BasicGuider", "inputs": {"model": ["9", 0], "conditioning": ["2", 0]}},
         "4": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["1", 0], "guider": ["3", 0],
                                                                "sampler": ["5", 0], "sigmas": ["6", 0],
                                                                "latent_image": ["7", 0]}},
         "8": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["9", 2]}},
         "10": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "flux"}},
         "9": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux.safetensors"}}}
    plan = GraphPlan.from_graph(g).placed("a lighthouse", 42)
    assert plan.seed == 42 and plan.prompt == "a lighthouse"
    assert plan.graph["1"]["inputs"]["noise_seed"] == 42 and plan.graph["2"]["inputs"]["text"] == "a lighthouse"
    with pytest.raises(GraphError, match="no prompt"):
        GraphPlan.from_graph(g).placed(None, 1)


def test_graphs_that_cannot_be_regenerated():
    with pytest.raises(GraphError, match="UI workflow"):
        check_api_graph({"nodes": [], "links": []})
    with pytest.raises(GraphError, match="no class_type"):
        check_api_graph({"1": {"inputs": {}}})
    loaded = {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    with pytest.raises(GraphError, match="no seed input"):
        GraphPlan.from_graph(loaded)


def test_oversize_workflow_file_says_so_not_invalid_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    wf = tmp_path / "big.json"
    wf.write_text(json.dumps(sd_graph(1)))
    monkeypatch.setattr(mutations, "MAX_WORKFLOW_BYTES", 10)
    with pytest.raises(GraphError, match="bytes; a workflow is at most 10") as caught:
        load_workflow(str(wf))
    assert "not valid JSON" not in str(caught.value)


def test_insert_face_nodes_between_decoder_and_saver():
    nodes = {"1": {"class_type": "FaceRestoreModelLoader", "inputs": {"model_name": "codeformer.pth"}},
             "2": {"class_type": "FaceRestoreWithModel",
                   "inputs": {"facerestore_model": ["1", 0], "image": "$image", "fidelity": 0.5}}}
    g = insert_face_nodes(sd_graph(3), nodes)
    assert g["9"]["inputs"]["images"] == ["sdeval_face_2", 0]
    assert g["sdeval_face_2"]["inputs"] == {"facerestore_model": ["sdeval_face_1", 0], "image": ["8", 0],
                                            "fidelity": 0.5}
    with pytest.raises(GraphError, match="no image-saving node"):
        insert_face_nodes({"1": {"class_type": "EmptyImage", "inputs": {}}}, nodes)


def src(text: str, name: str = "gates.toml") -> TomlSource:
    import tomllib

    return TomlSource(tomllib.loads(text), name=name, text=text)


def test_policy_regenerate_table(tmp_path: Path):
    wf = tmp_path / "face.json"
    wf.write_text(json.dumps(sd_graph(1)))
    pol = tmp_path / "gates.toml"
    text = '[regenerate]\nreprompt = "append"\nappend_terms = ["sharp"]\nrestore_face_workflow = "face.json"\n'
    pol.write_text(text)
    p = build_policy(src(text, str(pol)))
    assert p.regenerate["restore_face_workflow"] == str(wf)  # relative to the policy file
    cfg = RegenerateConfig.from_table(p.regenerate)
    assert cfg.reprompt.apply("x", 1) == "x, sharp" and cfg.restore_face.workflow["9"]["class_type"] == "SaveImage"
    assert p.as_dict()["regenerate"]["reprompt"] == "append"


@pytest.mark.parametrize("text, fragment", [
    ('[regenerate]\nreprmopt = "append"', "unknown key 'reprmopt' in \\[regenerate\\]; did you mean 'reprompt'"),
    ('[regenerate]\nreprompt = "shout"', "reprompt must be one of"),
    ('[regenerate]\ntemplate = "no placeholder"', "containing {prompt}"),
    ('[regenerate]\nrestore_face_workflow = "/nonexistent/face.json"', "workflow file not found"),
    ('[regenerate.restore_face_nodes.1]\nclass_type = "FaceRestore"\ninputs = {image = ["8", 0]}', '"\\$image"'),
    ('regenerate = 3', "must be a table"),
])
def test_policy_regenerate_errors_name_the_key(text, fragment):
    with pytest.raises(PolicyError, match=fragment):
        build_policy(src(text))
