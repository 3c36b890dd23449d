"""Property-based fuzzing of the metadata readers and the row writers (bounded: CI stays fast).

For any text in any chunk: no exception escapes a reader, no input takes more than a second
(hypothesis' deadline), and the rows made from what was read are written and parse back.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdeval.inputs.metadata.a1111 import parse_a1111
from sdeval.inputs.metadata.comfyui import parse_comfyui
from sdeval.inputs.metadata.reader import read_metadata
from sdeval.results.files import csv_bytes, write_result_files

FUZZ = settings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)

# text that looks like what the readers parse: keys, colons, commas, quotes, escapes, surrogates
_atoms = st.sampled_from(["Steps", "Size", "Seed", ":", ": ", ", ", "\"", "\\", "\n", "Negative prompt:",
                          "1024x1024", "1" + "0" * 50, "x", "=1+1", "\r", "\ud800", "{", "}", "[", "]",
                          "\"class_type\"", "\"inputs\"", "KSampler", "CLIPTextEncode", "-", "@"])
infotext = st.lists(st.one_of(_atoms, st.text(max_size=12)), max_size=60).map("".join)

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                       st.lists(st.one_of(st.text(max_size=4), st.integers(-3, 30)), max_size=2))
_node = st.fixed_dictionaries({"class_type": st.sampled_from(["KSampler", "CLIPTextEncode", "SaveImage",
                                                              "StringConcatenate", "EmptyLatentImage",
                                                              "VAEDecode", "LatentUpscaleBy", "X"]),
                               "inputs": st.dictionaries(st.sampled_from(
                                   ["seed", "text", "positive", "negative", "latent_image", "samples", "images",
                                    "width", "height", "scale_by", "string_a", "string_b", "value"]),
                                   _json_leaf, max_size=6)})
graph = st.dictionaries(st.integers(0, 30).map(str), _node, max_size=12)


def _row(meta) -> dict:
    return {"path": "x.png", "prompt": meta.prompt, "negative_prompt": meta.negative_prompt,
            "sampler": meta.sampler, "model": meta.model, "seed": meta.seed, "width": meta.width,
            "warnings": list(meta.warnings)}


def _csv_rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


@FUZZ
@given(infotext)
def test_a1111_reader_on_any_text(text):
    meta = parse_a1111(text)
    rows = _csv_rows(csv_bytes([_row(meta)], list(_row(meta))))
    assert len(rows) == 1


@FUZZ
@given(graph)
def test_comfyui_reader_on_any_graph(g):
    meta = parse_comfyui(json.dumps(g))
    assert len(_csv_rows(csv_bytes([_row(meta)], list(_row(meta))))) == 1


@FUZZ
@given(st.dictionaries(st.sampled_from(["parameters", "prompt", "workflow", "Comment", "Description",
                                        "invokeai_metadata", "sd-metadata", "Dream", "fooocus_scheme"]),
                       st.one_of(infotext, graph.map(json.dumps)), max_size=4))
def test_every_reader_on_any_png_chunks(tmp_path_factory, chunks):
    info = PngInfo()
    for k, v in chunks.items():
        info.add_itxt(k, v.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG", pnginfo=info)
    meta = read_metadata(Image.open(io.BytesIO(buf.getvalue())))
    out = Path(tmp_path_factory.mktemp("fuzz"))
    row = _row(meta)
    write_result_files(out, [row], list(row), {"command": "fuzz"}, 1)
    assert len(_csv_rows((out / "results.csv").read_bytes())) == 1
    assert json.loads((out / "results.jsonl").read_text(encoding="utf-8"))["path"] == "x.png"
