"""A corpus of files no generator would write, built at test time (some cases, a FIFO or a link to
a device, cannot be checked in). Each case says what must become of it: an ``error`` row with a
reason containing the given text, or an ``ok`` row (evaluated; warnings allowed)."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo


@dataclass(frozen=True)
class Case:
    name: str
    expect: str  # "ok" | "error"
    reason: str = ""


def _img(h: int = 64, w: int = 64, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _png(im: Image.Image, **text: str) -> bytes:
    info = PngInfo()
    for k, v in text.items():
        info.add_itxt(k, v)
    buf = io.BytesIO()
    im.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def _bomb() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + _chunk(b"IEND", b"")


def _graph(prompt: str, seed: object = 1, width: object = 512) -> str:
    return json.dumps({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": 512, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 20, "cfg": 7, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1, "model": ["1", 0],
                                                   "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0]}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "x"}}})


def build(root: Path) -> list[Case]:
    """Write the corpus under ``root``; returns what each file must become (paths relative to root)."""
    cases: list[Case] = []

    def put(name: str, data: bytes, expect: str, reason: str = "") -> None:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        cases.append(Case(name, expect, reason))

    good = _png(_img())
    put("good.png", good, "ok")
    put("empty.png", b"", "error", "empty file")
    for frac in (0.1, 0.5, 0.9):
        put(f"truncated_{int(frac * 100)}.png", good[: int(len(good) * frac)], "error", "")
    jpeg = io.BytesIO()
    _img(seed=1).save(jpeg, "JPEG")
    put("truncated.jpg", jpeg.getvalue()[:200], "error", "")
    put("text.png", b"hello, not an image\n" * 10, "error", "cannot identify")
    put("jpeg_named.png", jpeg.getvalue(), "ok")
    put("bomb.png", _bomb(), "error", "decompression bomb")
    for mode in ("L", "LA", "P", "RGBA", "I;16", "1", "CMYK", "I", "F"):
        im = _img(seed=2)
        im = im.convert("RGBA").convert(mode) if mode in ("LA",) else im.convert(mode)
        buf = io.BytesIO()
        fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode in ("I", "F") else "PNG")
        try:
            im.save(buf, fmt)
        except (OSError, ValueError):
            continue
        ext = {"JPEG": "jpg", "TIFF": "png", "PNG": "png"}[fmt]
        put(f"mode_{mode.replace(';', '_')}.{ext}", buf.getvalue(), "error" if fmt == "TIFF" else "ok",
            "unsupported format" if fmt == "TIFF" else "")
    apng = io.BytesIO()
    _img(seed=3).save(apng, "PNG", save_all=True, append_images=[_img(seed=4)])
    put("animated.png", apng.getvalue(), "ok")
    for o in range(1, 9):
        buf = io.BytesIO()
        exif = Image.Exif()
        exif[0x0112] = o
        _img(32, 48, seed=o).save(buf, "JPEG", exif=exif.tobytes())
        put(f"orientation_{o}.jpg", buf.getvalue(), "ok")
    put("unicode_名前_é.png", good, "ok")
    put("[/x].png".replace("/", "_"), good, "ok")
    put("[/x].png".replace("[/x]", "[") + "/x].png", good, "ok")  # a folder named "[" holding "x].png"
    put("csv_injection.png", _png(_img(seed=5), parameters="=HYPERLINK(\"http://x\")\r=1+1\nSteps: 20, Sampler: "
                                  "=cmd, Seed: 1, Size: 64x64"), "ok")
    put("huge_size.png", _png(_img(seed=6), parameters="cat\nSteps: 20, Sampler: Euler, Seed: 1, Size: 1"
                              + "0" * 5000 + "x64"), "ok")
    put("huge_graph_number.png", _png(_img(seed=7), prompt=_graph("a cat", width=12345).replace(
        "12345", "1" + "0" * 400)), "ok")
    put("surrogate.png", _png(_img(seed=8), prompt=_graph("a \ud800 cat")), "ok")
    put("long_params.png", _png(_img(seed=9), parameters="Steps: 20, " + "a" * 2_000_000), "ok")
    put("strip.png", _png(Image.fromarray(np.full((1, 16385, 3), 7, np.uint8))), "error", "aspect ratio out of range")
    # runtime-only entries: a link to a device, a FIFO, a link loop
    os.symlink("/dev/zero", root / "zero.png")
    cases.append(Case("zero.png", "error", "not a regular file"))
    os.mkfifo(root / "fifo.png")
    cases.append(Case("fifo.png", "error", "not a regular file"))
    os.symlink(root / "loop_b.png", root / "loop_a.png")
    os.symlink(root / "loop_a.png", root / "loop_b.png")
    cases.append(Case("loop_a.png", "error", "cannot read file"))
    cases.append(Case("loop_b.png", "error", "cannot read file"))
    return cases
