"""InvokeAI, Fooocus, NovelAI, sidecars and the reader's dispatch, limits and failure handling."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdeval.inputs.metadata.invokeai import parse_dream, split_negative
from sdeval.inputs.metadata.reader import read_metadata
from sdeval.inputs.metadata.sidecar import read_sidecar

A1111_TEXT = ("a cat\nNegative prompt: dog\n"
              "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 512x512")
GRAPH = {
    "5": {"class_type": "EmptyLatentImage",
          "inputs": {"width": 640, "height": 480, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a comfy cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 11, "steps": 8, "cfg": 2.0, "sampler_name": "euler", "scheduler": "normal",
        "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
        "latent_image": ["5", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}},
}


def png(chunks: dict[str, str], size: tuple[int, int] = (8, 8)) -> Image.Image:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buf = BytesIO()
    Image.new("RGB", size).save(buf, "PNG", pnginfo=info)
    buf.seek(0)
    return Image.open(buf)


def exif_image(fmt: str, ifd0: dict[int, object], **save: object) -> Image.Image:
    exif = Image.Exif()
    for tag, value in ifd0.items():
        exif[tag] = value
    buf = BytesIO()
    Image.new("RGB", (8, 8)).save(buf, fmt, exif=exif, **save)
    buf.seek(0)
    return Image.open(buf)


# --- InvokeAI -------------------------------------------------------------------------------------

def test_invokeai_3_metadata_chunk() -> None:
    data = {"generation_mode": "txt2img", "positive_prompt": "a misty forest",
            "negative_prompt": "people", "width": 768, "height": 512, "seed": 2891537712,
            "rand_device": "cpu", "cfg_scale": 7.5, "steps": 30, "scheduler": "euler_a",
            "model": {"model_name": "stable-diffusion-v1-5", "base_model": "sd-1",
                      "model_type": "main"}}
    meta = read_metadata(png({"invokeai_metadata": json.dumps(data),
                              "invokeai_graph": json.dumps({"nodes": {}})}))
    assert meta.source == "invokeai"
    assert (meta.prompt, meta.negative_prompt) == ("a misty forest", "people")
    assert (meta.seed, meta.width, meta.height, meta.steps) == (2891537712, 768, 512, 30)
    assert (meta.cfg, meta.sampler, meta.model) == (7.5, "euler_a", "stable-diffusion-v1-5")
    assert "invokeai_graph" in meta.raw


def test_invokeai_4_model_dict_with_hash() -> None:
    data = {"positive_prompt": "x", "seed": 1, "model": {"name": "Juggernaut XL", "key": "k",
                                                        "hash": "blake3:abc", "base": "sdxl"}}
    meta = read_metadata(png({"invokeai_metadata": json.dumps(data)}))
    assert (meta.model, meta.model_hash) == ("Juggernaut XL", "blake3:abc")


def test_invokeai_2_sd_metadata_and_dream() -> None:
    sd = {"model": "stable diffusion", "model_id": "stable-diffusion-1.5",
          "model_hash": "cc6cb27103",
          "app_id": "invoke-ai/InvokeAI", "app_version": "2.2.5",
          "image": {"prompt": [{"prompt": "a lighthouse [fog, rain]", "weight": 1.0}], "steps": 50,
                    "cfg_scale": 7.5, "height": 512, "width": 576, "seed": 42,
                    "sampler": "k_lms", "type": "txt2img"}}
    dream = '"a lighthouse [fog, rain]" -s 50 -S 42 -W 576 -H 512 -C 7.5 -A k_lms'
    meta = read_metadata(png({"sd-metadata": json.dumps(sd), "Dream": dream}))
    assert meta.source == "invokeai"
    assert (meta.prompt, meta.negative_prompt) == ("a lighthouse", "fog, rain")
    assert (meta.seed, meta.width, meta.height, meta.steps, meta.cfg) == (42, 576, 512, 50, 7.5)
    assert (meta.sampler, meta.model, meta.model_hash) == ("k_lms", "stable-diffusion-1.5",
                                                           "cc6cb27103")
    only_dream = read_metadata(png({"Dream": dream}))
    assert only_dream.source == "invokeai"
    assert (only_dream.prompt, only_dream.negative_prompt, only_dream.seed) == (
        "a lighthouse", "fog, rain", 42)
    assert (only_dream.width, only_dream.height, only_dream.cfg, only_dream.sampler) == (
        576, 512, 7.5, "k_lms")


def test_dream_variants() -> None:
    meta = parse_dream('"a cat" -s30 -S7 -I init.png -f 0.75 --width 640')
    assert (meta.prompt, meta.steps, meta.seed, meta.width) == ("a cat", 30, 7, 640)
    assert parse_dream('"unterminated -s 5').warnings
    assert split_negative("plain") == ("plain", None)


# --- Fooocus --------------------------------------------------------------------------------------

FOOOCUS = {"adm_guidance": "(1.5, 0.8, 0.3)", "base_model": "juggernautXL_v8Rundiffusion",
           "base_model_hash": "aeb7e9e689", "full_negative_prompt": ["(worst quality:2)"],
           "full_prompt": ["a red car, cinematic", "highly detailed"], "guidance_scale": 4,
           "negative_prompt": "", "performance": "Speed", "prompt": "a red car",
           "resolution": "(1152, 896)", "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras",
           "seed": "1234567890123", "sharpness": 2, "steps": 30, "styles": "['Fooocus V2']",
           "version": "Fooocus v2.5.5"}


def test_fooocus_png_json_scheme() -> None:
    meta = read_metadata(png({"parameters": json.dumps(FOOOCUS), "fooocus_scheme": "fooocus"}))
    assert meta.source == "fooocus"
    assert (meta.prompt, meta.negative_prompt, meta.seed) == ("a red car", "", 1234567890123)
    assert (meta.width, meta.height, meta.steps, meta.cfg) == (1152, 896, 30, 4.0)
    assert (meta.sampler, meta.scheduler) == ("dpmpp_2m_sde_gpu", "karras")
    assert (meta.model, meta.model_hash) == ("juggernautXL_v8Rundiffusion", "aeb7e9e689")


def test_fooocus_png_a1111_scheme() -> None:
    meta = read_metadata(png({"parameters": A1111_TEXT, "fooocus_scheme": "a1111"}))
    assert meta.source == "fooocus" and meta.seed == 123 and meta.prompt == "a cat"


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_fooocus_jpeg_ifd0_user_comment(fmt: str) -> None:
    image = exif_image(fmt, {0x9286: json.dumps(FOOOCUS), 0x927C: "fooocus",
                             0x0131: "Fooocus v2.5.5"})
    meta = read_metadata(image)
    assert meta.source == "fooocus" and meta.seed == 1234567890123 and meta.width == 1152
    a1111 = read_metadata(exif_image(fmt, {0x9286: A1111_TEXT, 0x927C: "a1111",
                                           0x0131: "Fooocus v2.5.5"}))
    assert a1111.source == "fooocus" and a1111.seed == 123


# --- NovelAI --------------------------------------------------------------------------------------

def test_novelai_chunks() -> None:
    comment = {"prompt": "1girl, library", "steps": 28, "height": 1216, "width": 832,
               "scale": 5.0, "uncond_scale": 1.0, "seed": 3068021376, "n_samples": 1,
               "noise_schedule": "native", "sampler": "k_euler_ancestral", "uc": "lowres, text"}
    meta = read_metadata(png({"Title": "AI generated image", "Description": "1girl, library",
                              "Software": "NovelAI", "Source": "NovelAI Diffusion V4 4F1A3C0F",
                              "Comment": json.dumps(comment)}))
    assert meta.source == "novelai"
    assert (meta.prompt, meta.negative_prompt, meta.seed) == ("1girl, library", "lowres, text",
                                                              3068021376)
    assert (meta.width, meta.height, meta.steps, meta.cfg) == (832, 1216, 28, 5.0)
    assert (meta.sampler, meta.scheduler) == ("k_euler_ancestral", "native")
    assert meta.model == "NovelAI Diffusion V4 4F1A3C0F"
    broken = read_metadata(png({"Software": "NovelAI", "Description": "a fox",
                                "Comment": "{broken"}))
    assert broken.prompt == "a fox" and any("malformed" in w for w in broken.warnings)


# --- sidecars -------------------------------------------------------------------------------------

def _save(path: Path, image: Image.Image, fmt: str = "PNG", **kw: object) -> None:
    image.save(path, fmt, **kw)


def test_sidecar_txt_and_caption(tmp_path: Path) -> None:
    _save(tmp_path / "a.png", Image.new("RGB", (8, 8)))
    (tmp_path / "a.txt").write_text("\ufeffa photo of sks dog, beach\n", encoding="utf-8")
    with Image.open(tmp_path / "a.png") as image:
        meta = read_metadata(image, str(tmp_path / "a.png"))
    assert meta.source == "sidecar" and meta.prompt == "a photo of sks dog, beach"
    _save(tmp_path / "b.jpg", Image.new("RGB", (8, 8)), "JPEG")
    (tmp_path / "b.caption").write_text("a caption", encoding="utf-8")
    assert read_sidecar(str(tmp_path / "b.jpg")).prompt == "a caption"
    assert read_sidecar(str(tmp_path / "missing.png")).source == "none"


def test_sidecar_only_fills_a_missing_prompt(tmp_path: Path) -> None:
    info = PngInfo()
    info.add_text("parameters", A1111_TEXT)
    _save(tmp_path / "c.png", Image.new("RGB", (8, 8)), pnginfo=info)
    (tmp_path / "c.txt").write_text("caption text", encoding="utf-8")
    with Image.open(tmp_path / "c.png") as image:
        meta = read_metadata(image, str(tmp_path / "c.png"))
    assert meta.source == "a1111" and meta.prompt == "a cat"

    no_prompt = "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64"
    info = PngInfo()
    info.add_text("parameters", no_prompt)
    _save(tmp_path / "d.png", Image.new("RGB", (8, 8)), pnginfo=info)
    (tmp_path / "d.caption").write_text("from the caption", encoding="utf-8")
    with Image.open(tmp_path / "d.png") as image:
        meta = read_metadata(image, str(tmp_path / "d.png"))
    assert meta.source == "a1111+sidecar"
    assert (meta.prompt, meta.seed) == ("from the caption", 5)


def test_oversize_sidecar_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "e.txt").write_text("x" * 200, encoding="utf-8")
    meta = read_sidecar(str(tmp_path / "e.png"), max_bytes=100)
    assert meta.source == "none" and "limit" in meta.warnings[0]


# --- reader dispatch, limits, failures ------------------------------------------------------------

def test_no_metadata_is_source_none() -> None:
    meta = read_metadata(Image.new("RGB", (4, 4)))
    assert meta.source == "none" and meta.prompt is None and meta.warnings == ()
    assert read_metadata(png({"Title": "just a title"})).source == "none"


def test_comfyui_chunk_wins_over_parameters() -> None:
    meta = read_metadata(png({"prompt": json.dumps(GRAPH), "parameters": A1111_TEXT}))
    assert meta.source == "comfyui" and meta.prompt == "a comfy cat" and meta.seed == 11
    assert (meta.width, meta.height, meta.negative_prompt) == (640, 480, "")
    assert set(meta.raw) == {"prompt", "parameters"}


def test_malformed_comfyui_falls_back_with_a_warning() -> None:
    meta = read_metadata(png({"prompt": '{"3": {"class_type": ', "parameters": A1111_TEXT}))
    assert meta.source == "a1111" and meta.seed == 123
    assert any("malformed JSON" in w for w in meta.warnings)
    alone = read_metadata(png({"prompt": "{nope"}))
    assert alone.source == "none" and alone.warnings and alone.raw["prompt"] == "{nope"


def test_oversize_json_is_not_parsed() -> None:
    text = json.dumps(GRAPH)
    meta = read_metadata(png({"prompt": text}), max_json_bytes=len(text) - 1, max_raw_chars=50)
    assert meta.source == "none" and meta.seed is None
    assert any("limit" in w and "not parsed" in w for w in meta.warnings)
    assert meta.raw["prompt"] == text[:50]
    inv = read_metadata(png({"invokeai_metadata": json.dumps({"positive_prompt": "x" * 500})}),
                        max_json_bytes=100)
    assert inv.source == "none" and "not parsed" in inv.warnings[0]


def test_animated_webp_exif_prompt() -> None:
    frames = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(3)]
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + json.dumps(GRAPH)
    exif[0x010F] = "workflow:" + json.dumps({"nodes": []})
    buf = BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=100,
                   exif=exif, lossless=True)
    buf.seek(0)
    meta = read_metadata(Image.open(buf))
    assert meta.source == "comfyui" and meta.seed == 11 and meta.prompt == "a comfy cat"


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_exif_does_not_raise() -> None:
    buf = BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff")
    buf.seek(0)
    meta = read_metadata(Image.open(buf))
    assert meta.source == "none"


def test_jpeg_comment_infotext() -> None:
    buf = BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", comment=A1111_TEXT.encode("utf-8"))
    buf.seek(0)
    meta = read_metadata(Image.open(buf))
    assert meta.source == "a1111" and meta.seed == 123
