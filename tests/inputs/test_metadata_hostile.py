"""Metadata from any file: nothing it holds costs more than linear time, crashes a reader, or
drops the rest of a record (issue 10)."""

from __future__ import annotations

import json
import threading
from io import BytesIO
from typing import Any, Callable

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdeval.inputs.metadata.a1111 import RE_PARAM, param_pairs, parse_a1111
from sdeval.inputs.metadata.comfyui import parse_comfyui
from sdeval.inputs.metadata.reader import MAX_CHUNK_CHARS, read_metadata


def _within(seconds: float, fn: Callable[[], Any]) -> Any:
    """A hang guard, not a speed claim: the old code took hours on these inputs."""
    box: dict[str, Any] = {}
    t = threading.Thread(target=lambda: box.update(value=fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "did not finish: super-linear on this input"
    return box["value"]


def _png_with(**chunks: str) -> Image.Image:
    info = PngInfo()
    for k, v in chunks.items():
        info.add_itxt(k, v)
    buf = BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "PNG", pnginfo=info)
    return Image.open(BytesIO(buf.getvalue()))


def test_the_param_parser_is_a1111s_regex_in_linear_time():
    rng = np.random.default_rng(0)
    alphabet = list('ab_ 1-/:,"\\.é\t')
    for _ in range(20_000):
        s = "".join(rng.choice(alphabet, size=int(rng.integers(0, 40))))
        assert param_pairs(s) == RE_PARAM.findall(s), s
    line = "Steps: 20, " + "a" * 8_000_000  # a one-line parameters chunk of 8 MB
    assert _within(10, lambda: param_pairs(line)) == [("Steps", "20"), ]


def test_a_huge_parameters_chunk_is_cut_and_said_so():
    text = "a cat\nSteps: 20, Sampler: Euler, Seed: 7, Size: 512x512\n" + "x" * (MAX_CHUNK_CHARS + 10)
    meta = _within(20, lambda: read_metadata(_png_with(parameters=text)))
    assert any("only the first" in w for w in meta.warnings)


def test_an_absurd_size_is_a_warning_on_that_field_only():
    meta = parse_a1111("a cat\nSteps: 20, Sampler: Euler, Seed: 7, Size: 1" + "0" * 5000 + "x512")
    assert meta.prompt == "a cat" and meta.seed == 7 and meta.steps == 20
    assert meta.width is None and any("'Size' is out of range" in w for w in meta.warnings)


def _fan_graph(n: int) -> dict:
    g: dict[str, Any] = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
                         "s0": {"class_type": "PrimitiveString", "inputs": {"value": "cat"}}}
    for i in range(1, n + 1):
        g[f"s{i}"] = {"class_type": "StringConcatenate",
                      "inputs": {"string_a": [f"s{i - 1}", 0], "string_b": [f"s{i - 1}", 0], "delimiter": " "}}
    g["p"] = {"class_type": "CLIPTextEncode", "inputs": {"text": [f"s{n}", 0], "clip": ["1", 1]}}
    g["n"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "bad", "clip": ["1", 1]}}
    g["l"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}}
    g["k"] = {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 7, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1, "model": ["1", 0],
                                                   "positive": ["p", 0], "negative": ["n", 0],
                                                   "latent_image": ["l", 0]}}
    g["d"] = {"class_type": "VAEDecode", "inputs": {"samples": ["k", 0], "vae": ["1", 2]}}
    g["o"] = {"class_type": "SaveImage", "inputs": {"images": ["d", 0], "filename_prefix": "x"}}
    return g


def test_concatenation_fan_out_is_linear_and_never_a_wrong_prompt():
    small = parse_comfyui(json.dumps(_fan_graph(3)))
    assert small.prompt == " ".join(["cat"] * 8) and small.seed == 5
    meta = _within(10, lambda: parse_comfyui(json.dumps(_fan_graph(31))))  # 2**31 copies of "cat"
    assert meta.prompt is None and meta.seed == 5
    assert any("builds more than" in w for w in meta.warnings)


def test_lone_surrogates_are_replaced_where_they_enter_with_a_warning():
    graph = _fan_graph(0)
    graph["s0"]["inputs"]["value"] = "a \ud800 cat"
    text = json.dumps(graph)  # json escapes the surrogate as \\ud800, as a hostile file would
    meta = read_metadata(_png_with(prompt=text))
    assert meta.prompt == "a \ufffd cat" and meta.seed == 5
    assert any("lone surrogates" in w for w in meta.warnings)
    meta.prompt.encode("utf-8")


def _saver_chain(n: int) -> dict:
    graph = _fan_graph(0)
    prev = "d"
    for i in range(n):  # each SaveImage feeds the next: a walk up from every saver is quadratic
        graph[f"o{i}"] = {"class_type": "SaveImage", "inputs": {"images": [prev, 0], "filename_prefix": "x"}}
        prev = f"o{i}"
    return graph


def test_thousands_of_savers_on_a_chain_are_read_in_linear_time():
    meta = _within(10, lambda: parse_comfyui(json.dumps(_saver_chain(5000))))  # 11 s for 3,000 before
    assert meta.prompt == "cat" and meta.seed == 5


def test_a_graph_over_the_node_cap_is_not_walked_and_says_so():
    graph = _saver_chain(10_001)
    meta = _within(20, lambda: parse_comfyui(json.dumps(graph)))
    assert meta.prompt is None and any("more than 10000" in w for w in meta.warnings)


def test_a_10_mb_line_in_a_webp_exif_user_comment_is_cut_and_said_so():
    exif = Image.Exif()
    text = "a cat\nSteps: 20, Seed: 3, Size: 16x16, " + "x" * 10_000_000
    exif[0x8769] = {0x9286: b"UNICODE\0" + text.encode("utf-16-be")}
    buf = BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, "WEBP", exif=exif.tobytes())
    meta = _within(20, lambda: read_metadata(Image.open(BytesIO(buf.getvalue()))))
    assert meta.prompt == "a cat" and meta.seed == 3
    assert any("only the first" in w for w in meta.warnings)
