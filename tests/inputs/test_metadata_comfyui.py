"""ComfyUI graph walk: prompt/seed/size/model from API-format graphs, primary sampler, warnings."""

from __future__ import annotations

import copy
import json
from io import BytesIO

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from shared_paths import shared_file
from sdeval.inputs.metadata.comfyui import find_prompt_inputs, parse_comfyui, walk_graph
from sdeval.inputs.metadata.reader import read_metadata


def _node(class_type: str, **inputs: object) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def basic_graph() -> dict:
    """ComfyUI's default txt2img workflow in API format."""
    return {
        "4": _node("CheckpointLoaderSimple", ckpt_name="v1-5-pruned-emaonly.safetensors"),
        "5": _node("EmptyLatentImage", width=512, height=768, batch_size=1),
        "6": _node("CLIPTextEncode", text="a red fox in the snow", clip=["4", 1]),
        "7": _node("CLIPTextEncode", text="blurry, lowres", clip=["4", 1]),
        "3": _node("KSampler", seed=156680208700286, steps=20, cfg=8.0, sampler_name="euler",
                   scheduler="normal", denoise=1.0, model=["4", 0], positive=["6", 0],
                   negative=["7", 0], latent_image=["5", 0]),
        "8": _node("VAEDecode", samples=["3", 0], vae=["4", 2]),
        "9": _node("SaveImage", images=["8", 0], filename_prefix="ComfyUI"),
    }


def test_basic_ksampler_graph() -> None:
    meta = walk_graph(basic_graph())
    assert meta.source == "comfyui"
    assert meta.prompt == "a red fox in the snow"
    assert meta.negative_prompt == "blurry, lowres"
    assert meta.seed == 156680208700286
    assert (meta.width, meta.height) == (512, 768)
    assert (meta.steps, meta.cfg, meta.sampler, meta.scheduler) == (20, 8.0, "euler", "normal")
    assert meta.model == "v1-5-pruned-emaonly.safetensors"
    assert len(meta.samplers) == 1
    primary = meta.samplers[0]
    assert primary.node_id == "3" and primary.class_type == "KSampler"
    assert primary.seed_inputs == (("3", "seed"),)
    assert primary.denoise == 1.0
    assert meta.warnings == ()
    assert find_prompt_inputs(basic_graph()) == [("6", "text")]


def test_seed_given_as_string_or_float_is_read() -> None:
    graph = basic_graph()
    graph["3"]["inputs"]["seed"] = "777"
    assert walk_graph(graph).seed == 777
    graph["3"]["inputs"]["seed"] = 778.0
    assert walk_graph(graph).seed == 778


def test_sdxl_encoder_joins_distinct_texts_and_lists_both_inputs() -> None:
    graph = basic_graph()
    graph["6"] = _node("CLIPTextEncodeSDXL", text_g="a castle on a hill", text_l="oil painting",
                       width=1024, height=1024, crop_w=0, crop_h=0, target_width=1024,
                       target_height=1024, clip=["4", 1])
    graph["7"] = _node("CLIPTextEncodeSDXL", text_g="ugly", text_l="ugly", clip=["4", 1])
    meta = walk_graph(graph)
    assert meta.prompt == "a castle on a hill\noil painting"
    assert meta.negative_prompt == "ugly"
    assert find_prompt_inputs(graph) == [("6", "text_g"), ("6", "text_l")]


def hires_graph(base_id: str = "3", hires_id: str = "11") -> dict:
    graph = basic_graph()
    base = graph.pop("3")
    graph[base_id] = base
    graph["10"] = _node("LatentUpscale", samples=[base_id, 0], upscale_method="nearest-exact",
                        width=1024, height=1536, crop="disabled")
    graph[hires_id] = _node("KSampler", seed=2, steps=12, cfg=6.0, sampler_name="dpmpp_2m",
                            scheduler="karras", denoise=0.5, model=["4", 0], positive=["6", 0],
                            negative=["7", 0], latent_image=["10", 0])
    graph["8"]["inputs"]["samples"] = [hires_id, 0]
    # a stray sampler whose output is never saved
    graph["12"] = _node("KSampler", seed=99, steps=5, cfg=1.0, sampler_name="euler",
                        scheduler="normal", denoise=1.0, model=["4", 0], positive=["6", 0],
                        negative=["7", 0], latent_image=["5", 0])
    return graph


@pytest.mark.parametrize(("base_id", "hires_id"), [("3", "11"), ("30", "11")])
def test_hires_two_pass_primary_is_the_upstream_sampler(base_id: str, hires_id: str) -> None:
    meta = walk_graph(hires_graph(base_id, hires_id))
    ids = [s.node_id for s in meta.samplers]
    assert ids == [base_id, hires_id, "12"]  # primary, other saved, then unsaved
    assert meta.seed == 156680208700286 and meta.steps == 20
    assert (meta.width, meta.height) == (512, 768)  # the generation size, as A1111 records it
    hires = meta.samplers[1]
    assert (hires.seed, hires.denoise, hires.scheduler) == (2, 0.5, "karras")
    assert hires.seed_inputs == ((hires_id, "seed"),)
    assert meta.samplers[2].seed == 99


def test_only_saved_samplers_compete_for_primary() -> None:
    graph = basic_graph()
    # a sampler with a smaller id upstream of nothing saved must not become primary
    graph["1"] = _node("KSampler", seed=5, steps=5, cfg=1.0, sampler_name="euler",
                       scheduler="normal", denoise=1.0, model=["4", 0], positive=["7", 0],
                       negative=["6", 0], latent_image=["5", 0])
    meta = walk_graph(graph)
    assert [s.node_id for s in meta.samplers] == ["3", "1"]
    assert meta.seed == 156680208700286


def test_sdxl_refiner_ksampler_advanced() -> None:
    graph = basic_graph()
    graph["3"] = _node("KSamplerAdvanced", add_noise="enable", noise_seed=1234, steps=25, cfg=7.0,
                       sampler_name="euler", scheduler="normal", start_at_step=0, end_at_step=20,
                       return_with_leftover_noise="enable", model=["4", 0], positive=["6", 0],
                       negative=["7", 0], latent_image=["5", 0])
    graph["20"] = _node("KSamplerAdvanced", add_noise="disable", noise_seed=0, steps=25, cfg=7.0,
                        sampler_name="euler", scheduler="normal", start_at_step=20,
                        end_at_step=10000, return_with_leftover_noise="disable", model=["4", 0],
                        positive=["6", 0], negative=["7", 0], latent_image=["3", 0])
    graph["8"]["inputs"]["samples"] = ["20", 0]
    meta = walk_graph(graph)
    assert [s.node_id for s in meta.samplers] == ["3", "20"]
    assert meta.seed == 1234
    assert meta.samplers[0].seed_inputs == (("3", "noise_seed"),)
    assert (meta.width, meta.height) == (512, 768)


def custom_advanced_graph() -> dict:
    return {
        "4": _node("CheckpointLoaderSimple", ckpt_name="sd_xl_base_1.0.safetensors"),
        "5": _node("EmptyLatentImage", width=1024, height=1024, batch_size=1),
        "6": _node("CLIPTextEncode", text="a lighthouse at dusk", clip=["4", 1]),
        "7": _node("CLIPTextEncode", text="text, watermark", clip=["4", 1]),
        "22": _node("CFGGuider", model=["4", 0], positive=["6", 0], negative=["7", 0], cfg=5.5),
        "25": _node("RandomNoise", noise_seed=987654321),
        "16": _node("KSamplerSelect", sampler_name="dpmpp_2m"),
        "17": _node("BasicScheduler", model=["4", 0], scheduler="karras", steps=30, denoise=1.0),
        "13": _node("SamplerCustomAdvanced", noise=["25", 0], guider=["22", 0],
                    sampler=["16", 0], sigmas=["17", 0], latent_image=["5", 0]),
        "8": _node("VAEDecode", samples=["13", 0], vae=["4", 2]),
        "9": _node("SaveImage", images=["8", 0], filename_prefix="ComfyUI"),
    }


def test_sampler_custom_advanced_random_noise_cfg_guider() -> None:
    meta = walk_graph(custom_advanced_graph())
    assert meta.prompt == "a lighthouse at dusk"
    assert meta.negative_prompt == "text, watermark"
    assert meta.seed == 987654321
    assert meta.samplers[0].seed_inputs == (("25", "noise_seed"),)
    assert (meta.steps, meta.cfg, meta.sampler, meta.scheduler) == (30, 5.5, "dpmpp_2m", "karras")
    assert meta.samplers[0].denoise == 1.0
    assert (meta.width, meta.height) == (1024, 1024)
    assert meta.model == "sd_xl_base_1.0.safetensors"
    assert meta.warnings == ()


def test_sampler_custom_with_sigmas_chain() -> None:
    graph = custom_advanced_graph()
    del graph["13"], graph["22"], graph["25"]
    graph["17"] = _node("KarrasScheduler", steps=18, sigma_max=14.6, sigma_min=0.03, rho=7.0)
    graph["18"] = _node("SplitSigmas", sigmas=["17", 0], step=0)
    graph["13"] = _node("SamplerCustom", model=["4", 0], add_noise=True, noise_seed=31337, cfg=4.0,
                        positive=["6", 0], negative=["7", 0], sampler=["16", 0],
                        sigmas=["18", 1], latent_image=["5", 0])
    meta = walk_graph(graph)
    assert meta.seed == 31337 and meta.samplers[0].seed_inputs == (("13", "noise_seed"),)
    assert (meta.steps, meta.scheduler, meta.cfg, meta.sampler) == (18, "karras", 4.0, "dpmpp_2m")


def flux_graph() -> dict:
    return {
        "12": _node("UNETLoader", unet_name="flux1-dev.safetensors", weight_dtype="default"),
        "11": _node("DualCLIPLoader", clip_name1="t5xxl_fp16.safetensors",
                    clip_name2="clip_l.safetensors", type="flux"),
        "6": _node("CLIPTextEncodeFlux", clip_l="a corgi", t5xxl="a corgi wearing a tiny hat",
                   guidance=3.5, clip=["11", 0]),
        "26": _node("FluxGuidance", conditioning=["6", 0], guidance=3.5),
        "22": _node("BasicGuider", model=["30", 0], conditioning=["26", 0]),
        "30": _node("LoraLoaderModelOnly", model=["12", 0], lora_name="hat.safetensors",
                    strength_model=1.0),
        "25": _node("RandomNoise", noise_seed=42),
        "16": _node("KSamplerSelect", sampler_name="euler"),
        "17": _node("BasicScheduler", model=["12", 0], scheduler="simple", steps=20, denoise=1.0),
        "27": _node("EmptySD3LatentImage", width=1024, height=768, batch_size=1),
        "13": _node("SamplerCustomAdvanced", noise=["25", 0], guider=["22", 0],
                    sampler=["16", 0], sigmas=["17", 0], latent_image=["27", 0]),
        "8": _node("VAEDecode", samples=["13", 0], vae=["10", 0]),
        "10": _node("VAELoader", vae_name="ae.safetensors"),
        "9": _node("SaveImage", images=["8", 0], filename_prefix="flux"),
    }


def test_flux_basic_guider_graph() -> None:
    meta = walk_graph(flux_graph())
    assert meta.prompt == "a corgi\na corgi wearing a tiny hat"
    assert meta.negative_prompt is None  # BasicGuider has no negative
    assert meta.cfg is None
    assert meta.seed == 42 and meta.samplers[0].seed_inputs == (("25", "noise_seed"),)
    assert (meta.width, meta.height) == (1024, 768)
    assert (meta.steps, meta.sampler, meta.scheduler) == (20, "euler", "simple")
    assert meta.model == "flux1-dev.safetensors"  # through the LoRA loader
    assert find_prompt_inputs(flux_graph()) == [("6", "clip_l"), ("6", "t5xxl")]
    assert meta.warnings == ()


def test_zero_out_negative_is_empty_not_the_positive() -> None:
    graph = custom_advanced_graph()
    graph["7"] = _node("ConditioningZeroOut", conditioning=["6", 0])
    meta = walk_graph(graph)
    assert meta.prompt == "a lighthouse at dusk"
    assert meta.negative_prompt == ""


def test_controlnet_apply_advanced_and_conditioning_pass_through() -> None:
    graph = basic_graph()
    graph["20"] = _node("ControlNetLoader", control_net_name="canny.safetensors")
    graph["21"] = _node("LoadImage", image="edges.png")
    graph["14"] = _node("CLIPTextEncode", text="golden hour", clip=["4", 1])
    graph["15"] = _node("ConditioningCombine", conditioning_1=["6", 0], conditioning_2=["14", 0])
    graph["16"] = _node("ConditioningSetTimestepRange", conditioning=["15", 0], start=0.0, end=1.0)
    graph["22"] = _node("ControlNetApplyAdvanced", positive=["16", 0], negative=["7", 0],
                        control_net=["20", 0], image=["21", 0], strength=0.8,
                        start_percent=0.0, end_percent=1.0)
    graph["23"] = _node("MyCustomConditioningTweak", conditioning=["22", 1], amount=0.3)
    graph["3"]["inputs"]["positive"] = ["22", 0]
    graph["3"]["inputs"]["negative"] = ["23", 0]
    meta = walk_graph(graph)
    assert meta.prompt == "a red fox in the snow\ngolden hour"
    assert meta.negative_prompt == "blurry, lowres"
    assert find_prompt_inputs(graph) == [("6", "text"), ("14", "text")]
    assert meta.warnings == ()


def test_links_to_primitive_nodes_are_followed() -> None:
    graph = basic_graph()
    graph["30"] = _node("PrimitiveInt", value=4242)
    graph["31"] = _node("PrimitiveStringMultiline", value=["32", 0])
    graph["32"] = _node("Text Multiline", text="a prompt from a primitive")
    graph["33"] = _node("Seed (rgthree)", seed=["30", 0])
    graph["3"]["inputs"]["seed"] = ["33", 0]
    graph["6"]["inputs"]["text"] = ["31", 0]
    meta = walk_graph(graph)
    assert meta.seed == 4242
    assert meta.samplers[0].seed_inputs == (("30", "value"),)  # where a reseed must write
    assert meta.prompt == "a prompt from a primitive"
    assert find_prompt_inputs(graph) == [("32", "text")]
    assert meta.warnings == ()


def test_unresolved_links_give_warnings() -> None:
    graph = basic_graph()
    graph["40"] = _node("WildcardProcessor", wildcard_text="__animals__", mode="random")
    graph["6"]["inputs"]["text"] = ["40", 0]
    graph["3"]["inputs"]["seed"] = ["99", 0]  # no such node
    meta = walk_graph(graph)
    assert meta.prompt is None and meta.seed is None
    assert meta.samplers[0].seed_inputs == ()
    assert meta.negative_prompt == "blurry, lowres"
    unresolved = [w for w in meta.warnings if "unresolved link" in w]
    assert any("prompt unknown: node 40 (WildcardProcessor)" in w and "run time" in w
               for w in meta.warnings)
    assert any("node 99" in w for w in unresolved)


def test_cycle_is_a_warning_not_a_hang() -> None:
    graph = basic_graph()
    graph["15"] = _node("ConditioningCombine", conditioning_1=["16", 0], conditioning_2=["6", 0])
    graph["16"] = _node("ConditioningCombine", conditioning_1=["15", 0], conditioning_2=["6", 0])
    graph["3"]["inputs"]["positive"] = ["15", 0]
    graph["50"] = _node("PrimitiveInt", value=["51", 0])
    graph["51"] = _node("PrimitiveInt", value=["50", 0])
    graph["7"]["inputs"]["text"] = ["50", 0]
    meta = walk_graph(graph)
    assert any("cycle" in w for w in meta.warnings)
    # a combine on a cycle cannot run: its text is unknown, not the part outside the cycle
    assert meta.prompt is None
    assert meta.seed == 156680208700286


def test_malformed_and_odd_graphs_are_warnings() -> None:
    bad = parse_comfyui('{"3": {"class_type": "KSampler", ')
    assert bad.source == "none" and any("malformed JSON" in w for w in bad.warnings)
    for graph in ([1, 2], "text", None, 5):
        meta = walk_graph(graph)  # type: ignore[arg-type]
        assert meta.source == "none" and meta.warnings
    ui = walk_graph({"nodes": [], "links": [], "version": 0.4})
    assert any("UI workflow" in w for w in ui.warnings)
    odd = walk_graph({"1": "not a node", "2": {"inputs": {}}, **basic_graph()})
    assert odd.seed == 156680208700286 and len(odd.warnings) == 2
    assert find_prompt_inputs([]) == []  # type: ignore[arg-type]
    oversize = parse_comfyui(json.dumps(basic_graph()), max_json_bytes=100)
    assert oversize.source == "none" and any("limit" in w for w in oversize.warnings)


def test_post_body_wrapper_is_accepted() -> None:
    assert walk_graph({"prompt": basic_graph(), "client_id": "x"}).seed == 156680208700286


def test_graph_is_not_modified() -> None:
    graph = hires_graph()
    before = copy.deepcopy(graph)
    walk_graph(graph)
    find_prompt_inputs(graph)
    assert graph == before


def test_reader_uses_prompt_chunk() -> None:
    info = PngInfo()
    info.add_text("prompt", json.dumps(flux_graph()))
    info.add_text("workflow", json.dumps({"nodes": [], "links": []}))
    buf = BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=info)
    buf.seek(0)
    meta = read_metadata(Image.open(buf))
    assert meta.source == "comfyui" and meta.seed == 42
    assert set(meta.raw) == {"prompt", "workflow"}


def _recorded_graph(name: str) -> dict:
    data = json.loads(shared_file("comfyui", name).read_text())
    return data["exchanges"][0]["request"]["json"]["prompt"]


def test_recorded_seeded_noise_graph() -> None:
    """The recorded test node pack has no sampler: the seeded node stands in for one."""
    graph = _recorded_graph("04_prompt_valid.json")
    meta = walk_graph(graph)
    assert meta.source == "comfyui"
    assert meta.seed == 12345 and meta.prompt == "a red fox, photo"
    assert (meta.width, meta.height) == (64, 48)
    assert meta.samplers[0].seed_inputs == (("1", "seed"),)
    assert find_prompt_inputs(graph) == [("1", "text")]


def test_recorded_core_only_graph() -> None:
    meta = walk_graph(_recorded_graph("07_core_only_graph.json"))
    assert meta.seed == 42 and meta.samplers[0].seed_inputs == (("2", "seed"),)
    assert (meta.width, meta.height) == (64, 64)
    assert meta.prompt is None


def test_recorded_saveimage_png() -> None:
    path = shared_file("comfyui", "04_output.png")
    with Image.open(path) as image:
        meta = read_metadata(image, str(path))
    assert meta.source == "comfyui"
    assert meta.seed == 12345 and meta.prompt == "a red fox, photo"
    assert "prompt" in meta.raw and "workflow" in meta.raw
    assert meta.warnings == ()


def test_shared_and_deep_chains_stay_fast_and_bounded() -> None:
    graph: dict = {"0": _node("CLIPTextEncode", text="a")}
    for i in range(1, 60):  # each combine fed twice by the previous one: 2**59 paths
        graph[str(i)] = _node("ConditioningCombine", conditioning_1=[str(i - 1), 0],
                              conditioning_2=[str(i - 1), 0])
    graph["k"] = _node("KSampler", seed=1, positive=["59", 0], negative=["0", 0])
    assert walk_graph(graph).prompt == "a"
    assert find_prompt_inputs(graph) == [("0", "text")]

    deep: dict = {"0": _node("PrimitiveInt", value=5)}
    for i in range(1, 1000):
        deep[str(i)] = _node("ConditioningSetArea", conditioning=[str(i - 1), 0])
        deep[f"p{i}"] = _node("PrimitiveInt", value=[f"p{i - 1}" if i > 1 else "0", 0])
    deep["k"] = _node("KSampler", seed=["p999", 0], positive=["999", 0], negative=["999", 0])
    meta = walk_graph(deep)
    assert meta.prompt is None and meta.seed is None
    assert any("deeper than" in w for w in meta.warnings)


def test_random_graphs_never_raise() -> None:
    import random

    rng = random.Random(1234)
    classes = ["KSampler", "SamplerCustomAdvanced", "RandomNoise", "CFGGuider", "BasicGuider",
               "CLIPTextEncode", "CLIPTextEncodeSDXL", "ConditioningCombine", "ConditioningZeroOut",
               "ControlNetApplyAdvanced", "EmptyLatentImage", "LatentUpscaleBy", "VAEDecode",
               "SaveImage", "PrimitiveInt", "StringConcatenate", "LoraLoader", "Custom"]
    names = ["seed", "noise_seed", "steps", "cfg", "positive", "negative", "latent_image",
             "model", "noise", "guider", "sigmas", "conditioning", "conditioning_1", "text",
             "text_g", "value", "width", "height", "scale_by", "samples", "images", "ckpt_name"]
    literals = [1, -5, 2**70, 1.5, float("nan"), "x", "", None, True, [1], {"a": 1}, "12"]
    for _ in range(300):
        ids = [str(rng.randint(1, 25)) for _ in range(rng.randint(0, 20))]
        graph = {nid: _node(rng.choice(classes), **{
            name: ([rng.choice(ids + ["99"]), rng.choice([0, 1, 5])] if rng.random() < 0.5
                   else rng.choice(literals))
            for name in rng.sample(names, rng.randint(0, 8))}) for nid in ids}
        meta = walk_graph(graph)
        find_prompt_inputs(graph)
        assert meta.source in ("comfyui", "none")


def test_string_concatenate_feeding_an_encoder() -> None:
    graph = basic_graph()
    graph["40"] = _node("StringConcatenate", string_a="a red fox", string_b="oil painting",
                        delimiter=", ")
    graph["6"]["inputs"]["text"] = ["40", 0]
    assert walk_graph(graph).prompt == "a red fox, oil painting"
    assert find_prompt_inputs(graph) == [("6", "text")]  # rewriting it replaces the link


# --- output size: what the saved image measures (hires fix, latent and image upscales) ---------


def _out(meta) -> tuple:
    return (meta.output_width, meta.output_height)


def _size_warnings(meta) -> list[str]:
    return [w for w in meta.warnings if "output size unknown" in w]


def test_single_pass_output_is_the_empty_latent_size() -> None:
    meta = walk_graph(basic_graph())
    assert _out(meta) == (512, 768) == (meta.width, meta.height)
    assert meta.warnings == ()
    flux = walk_graph(flux_graph())
    assert _out(flux) == (1024, 768) and flux.warnings == ()
    assert _out(walk_graph(custom_advanced_graph())) == (1024, 1024)


def test_empty_latent_off_the_grid_decodes_to_whole_cells() -> None:
    graph = basic_graph()
    graph["5"]["inputs"].update(width=516, height=770)  # latent is height // 8, width // 8
    meta = walk_graph(graph)
    assert (meta.width, meta.height) == (516, 770)  # as asked
    assert _out(meta) == (512, 768)  # what VAEDecode returns


def test_hires_latent_upscale_output_is_the_upscaled_size() -> None:
    meta = walk_graph(hires_graph())
    assert (meta.width, meta.height) == (512, 768)  # base size stays (regeneration needs it)
    assert _out(meta) == (1024, 1536)
    assert _size_warnings(meta) == []


@pytest.mark.parametrize(("width", "height", "expected"), [
    (0, 1024, (680, 1024)),   # keep aspect: round(64 * 1024 / 96) = 683 px -> 85 cells
    (1024, 0, (1024, 1536)),
    (0, 0, (512, 768)),       # both 0: the latent passes through unchanged
])
def test_latent_upscale_zero_side_keeps_aspect(width: int, height: int, expected: tuple) -> None:
    graph = hires_graph()
    graph["10"]["inputs"].update(width=width, height=height)
    assert _out(walk_graph(graph)) == expected


def test_latent_upscale_by_rounds_latent_cells_like_comfyui() -> None:
    graph = hires_graph()
    graph["10"] = _node("LatentUpscaleBy", samples=["3", 0], upscale_method="nearest-exact",
                        scale_by=1.5)
    assert _out(walk_graph(graph)) == (768, 1152)
    graph["5"]["inputs"].update(width=520, height=520)  # 65 cells
    graph["10"]["inputs"]["scale_by"] = 1.3
    meta = walk_graph(graph)
    # round(65 * 1.3) = round(84.5) = 84 cells = 672 px (not round(520 * 1.3) = 676)
    assert _out(meta) == (672, 672)
    assert (meta.width, meta.height) == (520, 520)


def image_hires_graph() -> dict:
    """Two passes through pixel space: decode, ImageScale, encode, second sampler, decode."""
    graph = basic_graph()
    graph["8"] = _node("VAEDecode", samples=["3", 0], vae=["4", 2])
    graph["13"] = _node("ImageScale", image=["8", 0], upscale_method="lanczos", width=1024,
                        height=1536, crop="disabled")
    graph["14"] = _node("VAEEncode", pixels=["13", 0], vae=["4", 2])
    graph["11"] = _node("KSampler", seed=2, steps=12, cfg=6.0, sampler_name="euler",
                        scheduler="normal", denoise=0.45, model=["4", 0], positive=["6", 0],
                        negative=["7", 0], latent_image=["14", 0])
    graph["15"] = _node("VAEDecode", samples=["11", 0], vae=["4", 2])
    graph["9"] = _node("SaveImage", images=["15", 0], filename_prefix="hires")
    return graph


def test_pixel_space_hires_through_vae_encode() -> None:
    meta = walk_graph(image_hires_graph())
    assert [s.node_id for s in meta.samplers] == ["3", "11"]
    assert (meta.width, meta.height) == (512, 768)
    assert _out(meta) == (1024, 1536)
    assert meta.warnings == ()


def test_image_scale_nodes_after_decode() -> None:
    graph = basic_graph()
    graph["13"] = _node("ImageScaleBy", image=["8", 0], upscale_method="lanczos", scale_by=1.5)
    graph["9"]["inputs"]["images"] = ["13", 0]
    assert _out(walk_graph(graph)) == (768, 1152)
    graph["13"] = _node("ImageScale", image=["8", 0], upscale_method="lanczos", width=0,
                        height=1000, crop="disabled")
    assert _out(walk_graph(graph)) == (667, 1000)  # round(512 * 1000 / 768)
    graph["13"] = _node("ImageScaleToTotalPixels", image=["8", 0], upscale_method="lanczos",
                        megapixels=1.0)
    assert _out(walk_graph(graph)) == (836, 1254)
    graph["13"]["inputs"]["resolution_steps"] = 64
    assert _out(walk_graph(graph)) == (832, 1280)
    graph["13"] = _node("ImageSharpen", image=["8", 0], sharpen_radius=1, sigma=1.0, alpha=1.0)
    assert _out(walk_graph(graph)) == (512, 768)


def test_model_upscaler_makes_the_output_size_unknown() -> None:
    graph = basic_graph()
    graph["20"] = _node("UpscaleModelLoader", model_name="4x-UltraSharp.pth")
    graph["21"] = _node("ImageUpscaleWithModel", upscale_model=["20", 0], image=["8", 0])
    graph["22"] = _node("ImageScaleBy", image=["21", 0], upscale_method="lanczos", scale_by=0.5)
    graph["9"]["inputs"]["images"] = ["22", 0]
    meta = walk_graph(graph)
    assert _out(meta) == (None, None)
    assert (meta.width, meta.height) == (512, 768)
    [warning] = _size_warnings(meta)
    assert "model upscaler 4x-UltraSharp.pth" in warning
    # a fixed-size ImageScale after the model upscaler states the size again
    graph["22"] = _node("ImageScale", image=["21", 0], upscale_method="lanczos", width=1024,
                        height=1536, crop="center")
    meta = walk_graph(graph)
    assert _out(meta) == (1024, 1536) and _size_warnings(meta) == []


def test_unknown_and_loaded_images_are_unknown_with_a_warning() -> None:
    graph = basic_graph()
    graph["13"] = _node("ImageCrop", image=["8", 0], width=256, height=256, x=0, y=0)
    graph["9"]["inputs"]["images"] = ["13", 0]
    meta = walk_graph(graph)
    assert _out(meta) == (None, None)
    assert any("node 13 (ImageCrop)" in w for w in _size_warnings(meta))

    img2img = basic_graph()
    img2img["20"] = _node("LoadImage", image="input.png")
    img2img["21"] = _node("VAEEncode", pixels=["20", 0], vae=["4", 2])
    img2img["3"]["inputs"]["latent_image"] = ["21", 0]
    meta = walk_graph(img2img)
    assert _out(meta) == (None, None)
    assert any("loaded file (node 20, LoadImage)" in w for w in _size_warnings(meta))


def test_saving_nodes_previews_and_disagreement() -> None:
    graph = hires_graph()
    graph["30"] = _node("VAEDecode", samples=["3", 0], vae=["4", 2])
    graph["31"] = _node("PreviewImage", images=["30", 0])  # first pass, shown only
    meta = walk_graph(graph)
    assert _out(meta) == (1024, 1536) and _size_warnings(meta) == []
    graph["31"] = _node("SaveImage", images=["30", 0], filename_prefix="base")
    meta = walk_graph(graph)  # both passes saved: this file may be either
    assert _out(meta) == (None, None)
    [warning] = _size_warnings(meta)
    assert "disagree" in warning and "1024x1536" in warning and "512x768" in warning


def test_output_size_through_latent_pass_through_and_rotation() -> None:
    graph = basic_graph()
    graph["20"] = _node("RepeatLatentBatch", samples=["3", 0], amount=2)
    graph["21"] = _node("LatentRotate", samples=["20", 0], rotation="90 degrees")
    graph["8"]["inputs"]["samples"] = ["21", 0]
    assert _out(walk_graph(graph)) == (768, 512)


def test_no_saving_node_is_a_warning() -> None:
    graph = basic_graph()
    del graph["9"]
    meta = walk_graph(graph)
    assert _out(meta) == (None, None)
    assert (meta.width, meta.height) == (512, 768)
    assert any("no image-saving node" in w for w in _size_warnings(meta))


def test_recorded_graphs_output_size() -> None:
    assert _out(walk_graph(_recorded_graph("04_prompt_valid.json"))) == (64, 48)
    meta = walk_graph(_recorded_graph("07_core_only_graph.json"))
    assert _out(meta) == (64, 64) and meta.warnings == ()
