"""AUTOMATIC1111 infotext parsing and EXIF UserComment decoding (PNG, JPEG, WebP)."""

from __future__ import annotations

from io import BytesIO

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdeval.inputs.metadata.a1111 import (
    decode_user_comment,
    hires_output_size,
    parse_a1111,
    parse_params_line,
)
from sdeval.inputs.metadata.reader import read_metadata

INFOTEXT = (
    "masterpiece, a knight in ornate armor,\n"
    "dramatic lighting\n"
    "Negative prompt: lowres, bad anatomy\n"
    "extra fingers\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3405691582, "
    'Size: 832x1216, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, '
    'Lora hashes: "knight: a1b2c3, armor: d4e5f6", Version: v1.10.1'
)


def test_full_infotext() -> None:
    meta = parse_a1111(INFOTEXT)
    assert meta.source == "a1111"
    assert meta.prompt == "masterpiece, a knight in ornate armor,\ndramatic lighting"
    assert meta.negative_prompt == "lowres, bad anatomy\nextra fingers"
    assert meta.seed == 3405691582
    assert (meta.width, meta.height) == (832, 1216)
    assert (meta.steps, meta.cfg) == (28, 6.5)
    assert (meta.sampler, meta.scheduler) == ("DPM++ 2M", "Karras")
    assert (meta.model, meta.model_hash) == ("sd_xl_base_1.0", "31e35c80fc")


def test_quoted_values_are_json() -> None:
    params = parse_params_line('Steps: 5, Lora hashes: "a: 1, b: \\"2\\"", Seed: 1, Sampler: Euler')
    assert params["Lora hashes"] == 'a: 1, b: "2"'
    assert params["Seed"] == "1"


def test_last_line_with_few_pairs_stays_prompt() -> None:
    meta = parse_a1111("style: watercolor, subject: a fox")
    assert meta.prompt == "style: watercolor, subject: a fox"
    assert meta.seed is None and meta.steps is None


def test_params_only_and_no_negative() -> None:
    meta = parse_a1111(
        "a cat\r\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 512x512")
    assert meta.prompt == "a cat" and meta.negative_prompt is None
    assert (meta.seed, meta.width, meta.sampler, meta.scheduler) == (123, 512, "Euler a", None)
    empty = parse_a1111("Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 9")
    assert empty.prompt is None and empty.seed == 9


@pytest.mark.parametrize("text", ["a plain prompt", "ünïcødé ✓ prompt, 東京"])
def test_user_comment_both_byte_orders(text: str) -> None:
    for codec in ("utf-16-be", "utf-16-le"):
        assert decode_user_comment(b"UNICODE\0" + text.encode(codec)) == text
    assert decode_user_comment(b"UNICODE\0\xff\xfe" + text.encode("utf-16-le")) == text
    assert decode_user_comment(b"ASCII\0\0\0" + text.encode("utf-8")) == text
    assert decode_user_comment(b"\0" * 8 + text.encode("utf-8") + b"\0") == text
    assert decode_user_comment("ASCII\0\0\0" + text) == text


def _exif_image(fmt: str, comment: bytes) -> Image.Image:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    buf = BytesIO()
    Image.new("RGB", (16, 16), (120, 60, 30)).save(buf, fmt, exif=exif)
    buf.seek(0)
    return Image.open(buf)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("codec", ["utf-16-be", "utf-16-le"])
def test_exif_user_comment_in_jpeg_and_webp(fmt: str, codec: str) -> None:
    text = INFOTEXT.replace("a knight", "a knight ⚔")
    image = _exif_image(fmt, b"UNICODE\0" + text.encode(codec))
    meta = read_metadata(image)
    assert meta.source == "a1111"
    assert meta.prompt == "masterpiece, a knight ⚔ in ornate armor,\ndramatic lighting"
    assert meta.seed == 3405691582 and meta.model == "sd_xl_base_1.0"
    assert meta.raw["exif:UserComment"] == text
    assert meta.warnings == ()


def test_exif_user_comment_ascii_prefix() -> None:
    meta = read_metadata(_exif_image("JPEG", b"ASCII\0\0\0" + INFOTEXT.encode("ascii")))
    assert meta.source == "a1111" and meta.steps == 28


@pytest.mark.parametrize("unicode_text", [False, True])
def test_png_parameters_chunk(unicode_text: bool) -> None:
    text = INFOTEXT.replace("knight", "騎士") if unicode_text else INFOTEXT
    info = PngInfo()
    info.add_text("parameters", text)  # Pillow writes iTXt when the text is not latin-1
    buf = BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=info)
    buf.seek(0)
    meta = read_metadata(Image.open(buf))
    assert meta.source == "a1111"
    assert meta.prompt.startswith("masterpiece, a " + ("騎士" if unicode_text else "knight"))
    assert meta.raw["parameters"] == text


def test_utf8_written_into_latin1_text_chunk_is_recovered() -> None:
    info = PngInfo()
    info.add_text("parameters", INFOTEXT.replace("knight", "chevalier à")
                  .encode("utf-8").decode("latin-1"))
    buf = BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=info)
    buf.seek(0)
    assert "chevalier à" in read_metadata(Image.open(buf)).prompt


# --- output size: Size is the first-pass size; hires fix sets what the saved image measures ----

HIRES = ("a lighthouse\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: {size}, "
         "Model: sd15, Denoising strength: 0.5, {hires}Hires upscaler: Latent, Version: v1.10.1")


def _hires(size: str, hires: str) -> tuple:
    meta = parse_a1111(HIRES.format(size=size, hires=hires))
    return (meta.width, meta.height), (meta.output_width, meta.output_height)


def test_without_hires_the_output_is_size() -> None:
    meta = parse_a1111(INFOTEXT)
    assert (meta.output_width, meta.output_height) == (832, 1216)
    assert _hires("512x768", "") == ((512, 768), (512, 768))


@pytest.mark.parametrize(("size", "hires", "output"), [
    ("512x512", "Hires upscale: 2, ", (1024, 1024)),
    ("832x1216", "Hires upscale: 1.5, ", (1248, 1824)),
    # int(520 * 1.3) = 676, and the second pass runs on a 676 // 8 = 84-cell latent
    ("520x520", "Hires upscale: 1.3, ", (672, 672)),
    ("512x512", "Hires upscale: 1, ", (512, 512)),
    # a 0 side keeps the aspect ratio: 1024 * 768 // 512
    ("512x768", "Hires resize: 1024x0, ", (1024, 1536)),
    ("512x768", "Hires resize: 0x1000, ", (664, 1000)),  # 1000 * 512 // 768 = 666 -> 83 cells
    # both sides: cover the box, then crop whole latent cells (truncate_x/_y)
    ("512x512", "Hires resize: 1024x768, ", (1024, 768)),
    ("512x768", "Hires resize: 1000x1000, ", (1000, 1000)),
    # off the grid: a 127 x 191-cell latent cut by (1530 - 1020) // 8 = 63 rows
    ("512x768", "Hires resize: 1020x1020, ", (1016, 1024)),
])
def test_hires_fix_output_size(size: str, hires: str, output: tuple) -> None:
    base, out = _hires(size, hires)
    assert base == tuple(int(v) for v in size.split("x"))  # Size stays the base size
    assert out == output


def test_unreadable_hires_values_make_the_output_unknown() -> None:
    assert _hires("512x512", "Hires upscale: lots, ")[1] == (None, None)
    assert _hires("512x512", 'Hires resize: "big", ')[1] == (None, None)
    assert hires_output_size(512, 512, None, None) == (512, 512)


def test_old_first_pass_size_infotext() -> None:
    """Before A1111 1.0, Size was the final size and First pass size the base (0x0: computed)."""
    meta = parse_a1111("a fox\nSteps: 20, Seed: 5, Size: 1024x768, First pass size: 512x384, "
                       "Denoising strength: 0.7")
    assert (meta.width, meta.height) == (512, 384)
    assert (meta.output_width, meta.output_height) == (1024, 768)
    computed = parse_a1111("a fox\nSteps: 20, Seed: 5, Size: 1024x1024, First pass size: 0x0")
    assert (computed.width, computed.height) == (512, 512)
    assert (computed.output_width, computed.output_height) == (1024, 1024)


def test_hires_infotext_read_from_a_png() -> None:
    info = PngInfo()
    info.add_text("parameters", HIRES.format(size="512x512", hires="Hires upscale: 2, "))
    buf = BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=info)
    buf.seek(0)
    meta = read_metadata(Image.open(buf))
    assert (meta.width, meta.height, meta.output_width, meta.output_height) == (512, 512, 1024,
                                                                                1024)


def test_lora_tags_and_vae_are_recorded() -> None:
    from sdeval.inputs.metadata.a1111 import parse_a1111
    from sdeval.inputs.metadata.types import LoraInfo

    meta = parse_a1111("a knight <lora:armor_v2:0.8>, <LORA:style:0.5:0.3> <lora:plain> <lora:named:te=0.4:unet=0.9>\n"
                       "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512, VAE: vae-ft-mse.safetensors")
    assert meta.loras == (LoraInfo("armor_v2", 0.8, 0.8), LoraInfo("style", 0.3, 0.5),
                          LoraInfo("plain", 1.0, 1.0), LoraInfo("named", 0.9, 0.4))
    assert meta.vae == "vae-ft-mse.safetensors"
    assert parse_a1111("no tags\nSteps: 20, Sampler: Euler, Seed: 1").loras == ()


def test_unclosed_lora_tags_are_not_loras() -> None:
    from sdeval.inputs.metadata.a1111 import parse_a1111

    text = "<lora:" * 20000 + " <lora:real:0.5>\nSteps: 20, Sampler: Euler, Seed: 1"
    assert [lora.name for lora in parse_a1111(text).loras] == ["real"]
