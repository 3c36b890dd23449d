"""ComfyUI graphs built with popular custom-node packs, in the shapes real graphs have.

Each pack test builds the graph inline (no shared data needed): the text nodes a prompt passes
through, the loaders the model, VAE and LoRAs come from, and what the reader must say when the
graph does not hold the prompt (a warning naming the node, never a wrong prompt).
"""

from __future__ import annotations

from typing import Any

from sdeval.inputs.metadata.comfyui import find_prompt_inputs, walk_graph
from sdeval.inputs.metadata.types import LoraInfo


def _node(class_type: str, **inputs: Any) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def _core(positive: list, negative: list, *, model: list | None = None, seed: int = 42,
          latent: list | None = None) -> dict[str, dict]:
    """Checkpoint, empty latent, KSampler, decode and save, around the given conditionings."""
    return {
        "1": _node("CheckpointLoaderSimple", ckpt_name="animatrix_v20.safetensors"),
        "5": _node("EmptyLatentImage", width=512, height=768, batch_size=1),
        "3": _node("KSampler", seed=seed, steps=20, cfg=8.0, sampler_name="euler",
                   scheduler="normal", denoise=1.0, model=model or ["1", 0], positive=positive,
                   negative=negative, latent_image=latent or ["5", 0]),
        "8": _node("VAEDecode", samples=["3", 0], vae=["1", 2]),
        "9": _node("SaveImage", filename_prefix="x", images=["8", 0]),
    }


def _unknown_warnings(meta) -> list[str]:
    return [w for w in meta.warnings if "prompt unknown" in w]


# --- WAS node suite -------------------------------------------------------------------------

def _was_graph() -> dict[str, dict]:
    """The calibration set's shape: Text Multiline -> Text Concatenate -> Text to Conditioning."""
    g = _core(["339", 0], ["341", 0])
    g.update({
        "331": _node("Text Multiline", text="Is, This, Different, Than"),
        "334": _node("Text Multiline", text=" "),
        "333": _node("Text Concatenate", linebreak_addition="false", text_a=["331", 0], text_b=["334", 0]),
        "335": _node("Text Multiline", text="embedding:EasyNegative, deformed, ugly"),
        "339": _node("Text to Conditioning", clip=["1", 1], text=["333", 0]),
        "341": _node("Text to Conditioning", clip=["1", 1], text=["335", 0]),
        "338": _node("Text Concatenate", linebreak_addition="true", text_a=["333", 0], text_b=["335", 0]),
        "342": _node("Text to Console", label="Prompt A", text=["338", 0]),
    })
    return g


def test_was_text_multiline_concatenate_to_conditioning() -> None:
    g = _was_graph()
    meta = walk_graph(g)
    assert meta.prompt == "Is, This, Different, Than" and meta.seed == 42
    assert meta.negative_prompt == "embedding:EasyNegative, deformed, ugly"
    assert _unknown_warnings(meta) == []
    # a computed text is rewritten at the encoder; a literal one where it is written
    assert find_prompt_inputs(g) == [("339", "text")]
    g["339"]["inputs"]["text"] = ["331", 0]
    assert find_prompt_inputs(g) == [("331", "text")]


def test_was_text_concatenate_linebreak_and_the_newer_delimiter_form() -> None:
    g = _was_graph()
    g["333"]["inputs"]["linebreak_addition"] = "true"
    assert walk_graph(g).prompt == "Is, This, Different, Than"  # "\n " then stripped per line
    g["331"]["inputs"]["text"] = "a cat"
    g["334"]["inputs"]["text"] = "oil painting"
    assert walk_graph(g).prompt == "a cat\noil painting"
    # later versions: delimiter + clean_whitespace, text_a..text_d sorted, empty ones skipped
    g["333"] = _node("Text Concatenate", delimiter=", ", clean_whitespace="true",
                     text_b=["334", 0], text_a=["331", 0], text_c=["340", 0])
    g["340"] = _node("Text Multiline", text="   ")
    assert walk_graph(g).prompt == "a cat, oil painting"
    g["333"]["inputs"]["delimiter"] = "\\n"
    assert walk_graph(g).prompt == "a cat\noil painting"


def test_was_text_string_outputs_one_per_input() -> None:
    g = _core(["6", 0], ["7", 0])
    g["45"] = _node("Text String", text="a lighthouse", text_b="at dusk", text_c="", text_d="")
    g["6"] = _node("Text to Conditioning", clip=["1", 1], text=["45", 1])
    g["7"] = _node("CLIPTextEncode", clip=["1", 1], text=["45", 0])
    meta = walk_graph(g)
    assert (meta.prompt, meta.negative_prompt) == ("at dusk", "a lighthouse")


def test_was_run_time_text_is_unknown_with_a_warning_naming_the_node() -> None:
    for node in (_node("Load Text File", file_path="prompts.txt", dictionary_name="[filename]"),
                 _node("Text Random Line", seed=5, text=["46", 0])):
        g = _was_graph()
        g["46"] = _node("Text Multiline", text="red\ngreen\nblue")
        g["60"] = node
        g["333"]["inputs"]["text_a"] = ["60", 0]
        meta = walk_graph(g)
        assert meta.prompt is None and meta.seed == 42
        assert meta.negative_prompt == "embedding:EasyNegative, deformed, ugly"
        [warning] = _unknown_warnings(meta)
        assert f"node 60 ({node['class_type']})" in warning and "run time" in warning


def test_was_parse_tokens_is_exact_only_without_tokens() -> None:
    g = _was_graph()
    g["53"] = _node("Text Parse Tokens", text=["333", 0])
    g["339"]["inputs"]["text"] = ["53", 0]
    assert walk_graph(g).prompt == "Is, This, Different, Than"
    g["331"]["inputs"]["text"] = "a [type] girl"
    meta = walk_graph(g)
    assert meta.prompt is None and "node 53 (Text Parse Tokens)" in _unknown_warnings(meta)[0]


# --- Efficiency Nodes -------------------------------------------------------------------------

def _efficient_graph() -> dict[str, dict]:
    return {
        "10": _node("Efficient Loader", ckpt_name="dreamshaper_8.safetensors",
                    vae_name="vae-ft-mse-840000.safetensors", clip_skip=-2,
                    lora_name="add_detail.safetensors", lora_model_strength=0.6,
                    lora_clip_strength=0.5, positive="a castle on a hill, sunset",
                    negative="lowres, blurry", token_normalization="none",
                    weight_interpretation="comfy", empty_latent_width=512,
                    empty_latent_height=640, batch_size=1, lora_stack=["11", 0]),
        "11": _node("LoRA Stacker", input_mode="simple", lora_count=2,
                    lora_name_1="film_grain.safetensors", lora_wt_1=0.3, model_str_1=1.0,
                    clip_str_1=1.0, lora_name_2="None", lora_wt_2=1.0, model_str_2=1.0,
                    clip_str_2=1.0),
        "12": _node("KSampler (Efficient)", model=["10", 0], seed=777, steps=25, cfg=6.5,
                    sampler_name="dpmpp_2m", scheduler="karras", positive=["10", 1],
                    negative=["10", 2], latent_image=["10", 3], denoise=1.0,
                    preview_method="auto", vae_decode="true", optional_vae=["10", 4]),
        "13": _node("SaveImage", filename_prefix="eff", images=["12", 5]),
    }


def test_efficiency_loader_widgets_and_efficient_sampler() -> None:
    meta = walk_graph(_efficient_graph())
    assert meta.prompt == "a castle on a hill, sunset" and meta.negative_prompt == "lowres, blurry"
    assert (meta.seed, meta.steps, meta.cfg, meta.sampler) == (777, 25, 6.5, "dpmpp_2m")
    assert meta.model == "dreamshaper_8.safetensors" and meta.vae == "vae-ft-mse-840000.safetensors"
    assert meta.loras == (LoraInfo("add_detail.safetensors", 0.6, 0.5),
                          LoraInfo("film_grain.safetensors", 0.3, 0.3))
    assert (meta.width, meta.height) == (512, 640)
    assert (meta.output_width, meta.output_height) == (512, 640)
    assert find_prompt_inputs(_efficient_graph()) == [("10", "positive")]


def test_efficiency_sdxl_tuple_sampler() -> None:
    g = {
        "20": _node("Eff. Loader SDXL", base_ckpt_name="sdxl_base.safetensors", base_clip_skip=-2,
                    refiner_ckpt_name="None", refiner_clip_skip=-2, positive_ascore=6.0,
                    negative_ascore=2.0, vae_name="Baked VAE", positive="a red fox",
                    negative="text", token_normalization="none", weight_interpretation="comfy",
                    empty_latent_width=1024, empty_latent_height=1024, batch_size=1),
        "21": _node("KSampler SDXL (Eff.)", sdxl_tuple=["20", 0], noise_seed=99, steps=30,
                    cfg=7.0, sampler_name="euler", scheduler="normal", latent_image=["20", 1],
                    start_at_step=0, refine_at_step=-1, preview_method="auto", vae_decode="true"),
        "22": _node("SaveImage", filename_prefix="x", images=["21", 3]),
    }
    meta = walk_graph(g)
    assert (meta.prompt, meta.negative_prompt, meta.seed) == ("a red fox", "text", 99)
    assert meta.model == "sdxl_base.safetensors" and meta.vae is None  # baked VAE


# --- Impact Pack ------------------------------------------------------------------------------

def test_impact_wildcard_processor_uses_the_populated_text() -> None:
    g = _core(["6", 0], ["7", 0])
    g["40"] = _node("ImpactWildcardProcessor", wildcard_text="a __animal__ in {snow|rain}",
                    populated_text="a fox in snow", mode="populate", seed=3,
                    **{"Select to add Wildcard": "Select the Wildcard to add to the text"})
    g["6"] = _node("CLIPTextEncode", clip=["1", 1], text=["40", 0])
    g["7"] = _node("CLIPTextEncode", clip=["1", 1], text="blurry")
    assert walk_graph(g).prompt == "a fox in snow"
    assert find_prompt_inputs(g) == [("40", "populated_text")]
    g["40"]["inputs"]["populated_text"] = "a __animal__ in snow"  # left for the server to expand
    meta = walk_graph(g)
    assert meta.prompt is None and "node 40 (ImpactWildcardProcessor)" in _unknown_warnings(meta)[0]
    g["40"]["inputs"]["populated_text"] = ""
    assert walk_graph(g).prompt is None


def test_impact_wildcard_encode_and_basic_pipe_sampler() -> None:
    g = {
        "1": _node("CheckpointLoaderSimple", ckpt_name="m.safetensors"),
        "40": _node("ImpactWildcardEncode", model=["1", 0], clip=["1", 1],
                    wildcard_text="{a|the} lighthouse", populated_text="a lighthouse",
                    mode="populate", seed=1),
        "7": _node("CLIPTextEncode", clip=["1", 1], text="fog"),
        "50": _node("ToBasicPipe", model=["40", 0], clip=["40", 1], vae=["1", 2],
                    positive=["40", 2], negative=["7", 0]),
        "5": _node("EmptyLatentImage", width=512, height=512, batch_size=1),
        "51": _node("ImpactKSamplerBasicPipe", basic_pipe=["50", 0], seed=11, steps=20, cfg=7.0,
                    sampler_name="euler", scheduler="normal", latent_image=["5", 0], denoise=1.0),
        "52": _node("VAEDecode", samples=["51", 1], vae=["1", 2]),
        "53": _node("SaveImage", filename_prefix="x", images=["52", 0]),
    }
    meta = walk_graph(g)
    assert (meta.prompt, meta.negative_prompt, meta.seed) == ("a lighthouse", "fog", 11)
    g["40"]["inputs"]["populated_text"] = "a lighthouse <lora:detail:0.5>"
    meta = walk_graph(g)
    assert meta.prompt is None and "lora" in _unknown_warnings(meta)[0]


# --- Comfyroll ----------------------------------------------------------------------------------

def test_comfyroll_prompt_text_concatenate_and_lora_stack() -> None:
    g = _core(["6", 0], ["7", 0], model=["61", 0])
    g.update({
        "30": _node("CR Prompt Text", prompt="portrait of a knight"),
        "31": _node("CR Prompt Text", prompt="dramatic light"),
        "32": _node("CR Text Concatenate", text1=["30", 0], text2=["31", 0], separator=", "),
        "6": _node("CLIPTextEncode", clip=["61", 1], text=["32", 0]),
        "7": _node("CLIPTextEncode", clip=["61", 1], text="bad hands"),
        "60": _node("CR LoRA Stack", switch_1="On", lora_name_1="armor.safetensors",
                    model_weight_1=0.8, clip_weight_1=0.7, switch_2="Off",
                    lora_name_2="off.safetensors", model_weight_2=1.0, clip_weight_2=1.0,
                    switch_3="On", lora_name_3="None", model_weight_3=1.0, clip_weight_3=1.0,
                    lora_stack=["62", 0]),
        "62": _node("CR LoRA Stack", switch_1="On", lora_name_1="style.safetensors",
                    model_weight_1=0.5, clip_weight_1=0.5, switch_2="Off", lora_name_2="None",
                    model_weight_2=1.0, clip_weight_2=1.0, switch_3="Off", lora_name_3="None",
                    model_weight_3=1.0, clip_weight_3=1.0),
        "61": _node("CR Apply LoRA Stack", model=["1", 0], clip=["1", 1], lora_stack=["60", 0]),
    })
    meta = walk_graph(g)
    assert meta.prompt == "portrait of a knight, dramatic light"
    assert meta.loras == (LoraInfo("style.safetensors", 0.5, 0.5),
                          LoraInfo("armor.safetensors", 0.8, 0.7))
    assert meta.model == "animatrix_v20.safetensors"


# --- rgthree ------------------------------------------------------------------------------------

def test_rgthree_power_prompt_and_power_lora_loader() -> None:
    g = _core(["70", 0], ["71", 0], model=["72", 0])
    g.update({
        "72": _node("Power Lora Loader (rgthree)", model=["1", 0], clip=["1", 1],
                    PowerLoraLoaderHeaderWidget={"type": "PowerLoraLoaderHeaderWidget"},
                    lora_1={"on": True, "lora": "ink.safetensors", "strength": 0.7},
                    lora_2={"on": False, "lora": "off.safetensors", "strength": 1.0},
                    lora_3={"on": True, "lora": "two.safetensors", "strength": 0.4,
                            "strengthTwo": 0.2},
                    **{"➕ Add Lora": ""}),
        "70": _node("Power Prompt (rgthree)", prompt="a koi pond, ink wash", opt_model=["72", 0],
                    opt_clip=["72", 1], insert_lora="CHOOSE", insert_embedding="CHOOSE",
                    insert_saved="CHOOSE"),
        "71": _node("Power Prompt - Simple (rgthree)", prompt="photo", opt_clip=["72", 1],
                    insert_embedding="CHOOSE", insert_saved="CHOOSE"),
    })
    meta = walk_graph(g)
    assert (meta.prompt, meta.negative_prompt) == ("a koi pond, ink wash", "photo")
    assert meta.loras == (LoraInfo("ink.safetensors", 0.7, 0.7), LoraInfo("two.safetensors", 0.4, 0.2))
    g["70"]["inputs"]["prompt"] = "a koi pond <lora:ink:0.8>"
    meta = walk_graph(g)
    assert meta.prompt is None and "node 70 (Power Prompt (rgthree))" in _unknown_warnings(meta)[0]


# --- ComfyUI-Custom-Scripts (pysssss) --------------------------------------------------------

def test_pysssss_string_function_and_show_text() -> None:
    g = _core(["6", 0], ["7", 0])
    g.update({
        "24": _node("PrimitiveStringMultiline", value="masterpiece"),
        "25": _node("PrimitiveStringMultiline", value="a cheese floating in space"),
        "29": _node("StringFunction|pysssss", action="append", tidy_tags="yes", text_a=["24", 0],
                    text_b=["25", 0], text_c=""),
        "30": _node("ShowText|pysssss", text=["29", 0]),
        "6": _node("CLIPTextEncode", clip=["1", 1], text=["30", 0]),
        "7": _node("CLIPTextEncode", clip=["1", 1], text="bad"),
    })
    assert walk_graph(g).prompt == "masterpiece, a cheese floating in space"
    g["29"]["inputs"]["tidy_tags"] = "no"
    assert walk_graph(g).prompt == "masterpiecea cheese floating in space"
    g["29"]["inputs"].update(action="replace", text_b="cheese", text_c="moon")
    g["29"]["inputs"]["text_a"] = "a cheese in space"
    assert walk_graph(g).prompt == "a moon in space"
    g["29"]["inputs"]["text_b"] = "/che+se/"
    meta = walk_graph(g)
    assert meta.prompt is None and "regular expression" in _unknown_warnings(meta)[0]


# --- SDXL Prompt Styler -----------------------------------------------------------------------

def test_sdxl_prompt_styler_is_exact_only_for_the_base_style() -> None:
    g = _core(["6", 0], ["7", 0])
    g.update({
        "80": _node("SDXLPromptStyler", text_positive="a tiger", text_negative="watermark",
                    style="base", log_prompt=False),
        "6": _node("CLIPTextEncodeSDXL", clip=["1", 1], width=1024, height=1024, crop_w=0,
                   crop_h=0, target_width=1024, target_height=1024, text_g=["80", 0], text_l=["80", 0]),
        "7": _node("CLIPTextEncodeSDXL", clip=["1", 1], width=1024, height=1024, crop_w=0,
                   crop_h=0, target_width=1024, target_height=1024, text_g=["80", 1], text_l=["80", 1]),
    })
    meta = walk_graph(g)
    assert (meta.prompt, meta.negative_prompt) == ("a tiger", "watermark")
    g["80"]["inputs"]["style"] = "sai-anime"
    meta = walk_graph(g)
    assert meta.prompt is None and meta.negative_prompt is None
    assert "'sai-anime'" in _unknown_warnings(meta)[0]


# --- generic: any text node, guiders, Flux --------------------------------------------------

def test_any_text_node_with_one_text_input_passes_it_on() -> None:
    g = _core(["6", 0], ["7", 0])
    g["90"] = _node("ttN text", text="a quiet harbour")
    g["91"] = _node("Some Pack Text Box", Text=["90", 0], multiline=True)
    g["6"] = _node("SomePackConditioner", clip=["1", 1], prompt=["91", 0], strength=1.0)
    g["7"] = _node("CLIPTextEncode", clip=["1", 1], text="noise")
    assert walk_graph(g).prompt == "a quiet harbour"
    g["91"]["inputs"]["text_2"] = "more"  # two texts combined somehow: unknown, not a guess
    meta = walk_graph(g)
    assert meta.prompt is None and "node 91 (Some Pack Text Box)" in _unknown_warnings(meta)[0]
    # one text, but settings that may rewrite it, or a class that says it does: unknown
    g["91"] = _node("Text Find and Replace", text=["90", 0], find="harbour", replace="bay")
    meta = walk_graph(g)
    assert meta.prompt is None and "'replace'" in _unknown_warnings(meta)[0]
    g["91"] = _node("Some Pack Text Box", Text=["90", 0], mode="uppercase")
    meta = walk_graph(g)
    assert meta.prompt is None and "string settings: mode" in _unknown_warnings(meta)[0]


def test_a_partly_unknown_prompt_is_unknown_not_partial() -> None:
    g = _core(["15", 0], ["7", 0])
    g["15"] = _node("ConditioningCombine", conditioning_1=["6", 0], conditioning_2=["16", 0])
    g["6"] = _node("CLIPTextEncode", clip=["1", 1], text="a red fox")
    g["16"] = _node("CLIPTextEncode", clip=["1", 1], text=["17", 0])
    g["17"] = _node("DPRandomGenerator", text="{a|b}", seed=1, autorefresh="No")
    g["7"] = _node("CLIPTextEncode", clip=["1", 1], text="bad")
    meta = walk_graph(g)
    assert meta.prompt is None and meta.negative_prompt == "bad"
    assert "node 17 (DPRandomGenerator)" in _unknown_warnings(meta)[0]


def test_flux_custom_sampler_guiders_and_model_only_lora() -> None:
    g = {
        "1": _node("UNETLoader", unet_name="flux1-dev.safetensors", weight_dtype="default"),
        "2": _node("LoraLoaderModelOnly", model=["1", 0], lora_name="flux_realism.safetensors",
                   strength_model=0.9),
        "3": _node("DualCLIPLoader", clip_name1="t5xxl.safetensors", clip_name2="clip_l.safetensors",
                   type="flux"),
        "4": _node("VAELoader", vae_name="ae.safetensors"),
        "6": _node("CLIPTextEncode", clip=["3", 0], text="a neon street at night"),
        "7": _node("FluxGuidance", conditioning=["6", 0], guidance=3.5),
        "8": _node("BasicGuider", model=["2", 0], conditioning=["7", 0]),
        "9": _node("RandomNoise", noise_seed=1234),
        "10": _node("KSamplerSelect", sampler_name="euler"),
        "11": _node("BasicScheduler", model=["2", 0], scheduler="simple", steps=20, denoise=1.0),
        "12": _node("EmptySD3LatentImage", width=1024, height=768, batch_size=1),
        "13": _node("SamplerCustomAdvanced", noise=["9", 0], guider=["8", 0], sampler=["10", 0],
                    sigmas=["11", 0], latent_image=["12", 0]),
        "14": _node("VAEDecode", samples=["13", 0], vae=["4", 0]),
        "15": _node("SaveImage", filename_prefix="flux", images=["14", 0]),
    }
    meta = walk_graph(g)
    assert (meta.prompt, meta.seed, meta.steps, meta.sampler) == ("a neon street at night", 1234, 20, "euler")
    assert meta.model == "flux1-dev.safetensors" and meta.vae == "ae.safetensors"
    assert meta.loras == (LoraInfo("flux_realism.safetensors", 0.9, None),)
    # CFGGuider with a combined positive; DualCFGGuider needs both conditionings
    g["16"] = _node("CLIPTextEncode", clip=["3", 0], text="rain")
    g["17"] = _node("ConditioningCombine", conditioning_1=["7", 0], conditioning_2=["16", 0])
    g["18"] = _node("CLIPTextEncode", clip=["3", 0], text="blurry")
    g["8"] = _node("CFGGuider", model=["2", 0], positive=["17", 0], negative=["18", 0], cfg=3.0)
    meta = walk_graph(g)
    assert (meta.prompt, meta.negative_prompt, meta.cfg) == ("a neon street at night\nrain", "blurry", 3.0)
    g["8"] = _node("DualCFGGuider", model=["2", 0], cond1=["7", 0], cond2=["19", 0],
                   negative=["18", 0], cfg_conds=5.0, cfg_cond2_negative=2.0)
    g["19"] = _node("CLIPTextEncode", clip=["3", 0], text=["20", 0])
    g["20"] = _node("Load Text File", file_path="x.txt", dictionary_name="[filename]")
    meta = walk_graph(g)
    assert meta.prompt is None and meta.negative_prompt == "blurry"


# --- checkpoint, VAE and LoRA stack from core loaders -------------------------------------------

def test_core_lora_chain_checkpoint_and_vae() -> None:
    g = _core(["6", 0], ["7", 0], model=["12", 0])
    g.update({
        "10": _node("VAELoader", vae_name="vae-ft-mse-840000-ema-pruned.safetensors"),
        "11": _node("LoraLoader", lora_name="first.safetensors", strength_model=0.8,
                    strength_clip=0.6, model=["1", 0], clip=["1", 1]),
        "12": _node("LoraLoader", lora_name="second.safetensors", strength_model=0.2,
                    strength_clip=0.2, model=["11", 0], clip=["11", 1]),
        "13": _node("LoraLoader", lora_name="unconnected.safetensors", strength_model=1.0,
                    strength_clip=1.0),
        "6": _node("CLIPTextEncode", clip=["12", 1], text="a bottle"),
        "7": _node("CLIPTextEncode", clip=["12", 1], text="text"),
    })
    g["8"]["inputs"]["vae"] = ["10", 0]
    meta = walk_graph(g)
    assert meta.model == "animatrix_v20.safetensors"
    assert meta.vae == "vae-ft-mse-840000-ema-pruned.safetensors"
    assert meta.loras == (LoraInfo("first.safetensors", 0.8, 0.6), LoraInfo("second.safetensors", 0.2, 0.2))
    g["8"]["inputs"]["vae"] = ["1", 2]
    assert walk_graph(g).vae is None  # the checkpoint's own VAE


# --- several saving nodes ---------------------------------------------------------------------

def _four_prompts() -> dict[str, dict]:
    """An A/B comparison: two first passes with different prompts, each saved at its own size."""
    g = _core(["6", 0], ["7", 0])
    g.update({
        "6": _node("CLIPTextEncode", clip=["1", 1], text="prompt A"),
        "7": _node("CLIPTextEncode", clip=["1", 1], text="bad"),
        "16": _node("CLIPTextEncode", clip=["1", 1], text="prompt B"),
        "23": _node("KSampler", seed=42, steps=20, cfg=8.0, sampler_name="euler", scheduler="normal",
                    denoise=1.0, model=["1", 0], positive=["16", 0], negative=["7", 0],
                    latent_image=["5", 0]),
        "24": _node("LatentUpscale", upscale_method="nearest-exact", width=768, height=1152,
                    crop="disabled", samples=["23", 0]),
        "28": _node("VAEDecode", samples=["24", 0], vae=["1", 2]),
        "29": _node("SaveImage", filename_prefix="x", images=["28", 0]),
    })
    return g


def test_several_savers_the_image_size_tells_which_one_wrote_the_file() -> None:
    g = _four_prompts()
    assert walk_graph(g, (512, 768)).prompt == "prompt A"
    meta = walk_graph(g, (768, 1152))
    assert meta.prompt == "prompt B" and (meta.output_width, meta.output_height) == (768, 1152)
    meta = walk_graph(g)  # no size to go by: the two prompts are candidates
    assert meta.prompt is None and meta.seed == 42 and meta.negative_prompt == "bad"
    assert any("which one made this file is not recorded" in w for w in meta.warnings)
    assert {s.node_id: s.prompt for s in meta.samplers} == {"3": "prompt A", "23": "prompt B"}
    g["24"]["inputs"].update(width=512, height=768)  # same sizes: still ambiguous
    assert walk_graph(g, (512, 768)).prompt is None


def test_several_savers_with_one_prompt_agree() -> None:
    g = _four_prompts()
    g["16"]["inputs"]["text"] = "prompt A"
    meta = walk_graph(g)
    assert meta.prompt == "prompt A" and not any("not recorded" in w for w in meta.warnings)
    assert meta.output_width is None  # two sizes saved, the file's own not given
    meta = walk_graph(g, (768, 1152))  # each stage saved: the file's size picks its saver
    assert (meta.output_width, meta.output_height) == (768, 1152) and meta.prompt == "prompt A"


# --- resolution after a model upscaler ----------------------------------------------------------

def test_model_upscaler_then_image_scale_states_the_saved_size() -> None:
    g = _core(["6", 0], ["7", 0])
    g.update({
        "6": _node("CLIPTextEncode", clip=["1", 1], text="a bottle"),
        "7": _node("CLIPTextEncode", clip=["1", 1], text="text"),
        "62": _node("UpscaleModelLoader", model_name="2x-PSNR.pth"),
        "63": _node("ImageUpscaleWithModel", upscale_model=["62", 0], image=["8", 0]),
        "64": _node("ImageScale", upscale_method="nearest-exact", width=1000, height=1500,
                    crop="disabled", image=["63", 0]),
    })
    g["9"]["inputs"]["images"] = ["64", 0]
    meta = walk_graph(g)
    assert (meta.output_width, meta.output_height) == (1000, 1500) and meta.output_resized
    assert (meta.width, meta.height) == (512, 768)
    g["9"]["inputs"]["images"] = ["63", 0]  # the model's own scale: not stated
    meta = walk_graph(g)
    assert meta.output_width is None and meta.output_resized
    g["9"]["inputs"]["images"] = ["8", 0]
    assert not walk_graph(g).output_resized
    # upscaled, encoded again and scaled as a latent to fixed dimensions for a second pass
    g["65"] = _node("VAEEncode", pixels=["63", 0], vae=["1", 2])
    g["66"] = _node("LatentUpscale", upscale_method="nearest-exact", width=1024, height=1536,
                    crop="disabled", samples=["65", 0])
    g["67"] = _node("KSampler", seed=42, steps=20, cfg=8.0, sampler_name="euler", scheduler="normal",
                    denoise=0.5, model=["1", 0], positive=["6", 0], negative=["7", 0],
                    latent_image=["66", 0])
    g["68"] = _node("VAEDecode", samples=["67", 0], vae=["1", 2])
    g["9"]["inputs"]["images"] = ["68", 0]
    meta = walk_graph(g)
    assert (meta.output_width, meta.output_height) == (1024, 1536) and not meta.output_resized


# --- hostile shapes: the text walk stays bounded ---------------------------------------------

def _text_chain(depth: int, doubling: bool) -> dict[str, dict]:
    g = _core(["e", 0], ["e", 0])
    g["t0"] = _node("Text Multiline", text="cat")
    for i in range(1, depth + 1):
        g[f"t{i}"] = _node("Text Concatenate", linebreak_addition="false", text_a=[f"t{i - 1}", 0],
                           text_b=[f"t{i - 1}", 0] if doubling else "x")
    g["e"] = _node("Text to Conditioning", clip=["1", 1], text=[f"t{depth}", 0])
    return g


def test_text_chains_are_memoised_capped_and_never_a_wrong_prompt() -> None:
    assert walk_graph(_text_chain(3, doubling=True)).prompt == "cat" * 8
    meta = walk_graph(_text_chain(40, doubling=True))  # 2**40 copies without the memo and the cap
    assert meta.prompt is None and meta.seed == 42
    assert any("builds more than" in w for w in meta.warnings)
    assert walk_graph(_text_chain(50, doubling=False)).prompt == "cat" + "x" * 50
    meta = walk_graph(_text_chain(3000, doubling=False))
    assert meta.prompt is None and any("text chain deeper than" in w for w in meta.warnings)


def test_a_reprompt_plan_rewrites_computed_and_widget_texts() -> None:
    from sdeval.gates.mutations import GraphPlan

    plan = GraphPlan.from_graph(_was_graph())  # a concatenation: rewritten at the encoder
    assert plan.prompts == ((("339", "text"), "Is, This, Different, Than "),)
    out = plan.build(7, lambda t: t.strip() + ", masterpiece")
    assert out["339"]["inputs"]["text"] == "Is, This, Different, Than, masterpiece"
    assert out["3"]["inputs"]["seed"] == 7
    plan = GraphPlan.from_graph(_efficient_graph())  # a widget string on the loader
    assert plan.prompts == ((("10", "positive"), "a castle on a hill, sunset"),)
    assert plan.build(8)["12"]["inputs"]["seed"] == 8


def test_quality_of_life_latent_factor_is_exact_only_without_rounding() -> None:
    g = _core(["6", 0], ["6", 0])
    g["6"] = _node("CLIPTextEncode", clip=["1", 1], text="x")
    g["20"] = _node("LatentUpscaleFactor _O", upscale_method="nearest-exact", WidthFactor=1.25,
                    HeightFactor=1.25, crop="disabled", samples=["3", 0])
    g["8"]["inputs"]["samples"] = ["20", 0]
    meta = walk_graph(g)  # 64x96 cells * 1.25 = 80x120: a multiple of 8, every version agrees
    assert (meta.output_width, meta.output_height) == (640, 960)
    g["20"]["inputs"]["WidthFactor"] = 1.53125  # 98 cells: rounded up or to the nearest by version
    meta = walk_graph(g)
    assert meta.output_width is None
    assert any("differs between versions" in w for w in meta.warnings)
    g["20"] = _node("LatentUpscaleFactorSimple _O", upscale_method="nearest-exact", factor=1.0,
                    crop="disabled", samples=["3", 0])
    assert (walk_graph(g).output_width, walk_graph(g).output_height) == (512, 768)
