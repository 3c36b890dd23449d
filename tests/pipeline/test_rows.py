"""The metadata columns of a results row: checkpoint, VAE and LoRA stack (``compare --arms-by``)."""

from __future__ import annotations

from sdeval.inputs.metadata.types import GenerationMetadata, LoraInfo
from sdeval.inputs.record import ImageRecord
from sdeval.pipeline.rows import META_COLUMNS, record_row


def test_row_carries_model_vae_and_loras() -> None:
    meta = GenerationMetadata(source="comfyui", model="m.safetensors", vae="v.pt",
                              loras=(LoraInfo("a.safetensors", 0.8, 0.6), LoraInfo("b", 1.0, None)))
    row = record_row(ImageRecord(path="x.png", metadata=meta))
    assert {"model", "vae", "loras"} <= set(META_COLUMNS)
    assert (row["model"], row["vae"]) == ("m.safetensors", "v.pt")
    assert row["loras"] == [{"name": "a.safetensors", "strength_model": 0.8, "strength_clip": 0.6},
                            {"name": "b", "strength_model": 1.0, "strength_clip": None}]
    assert record_row(ImageRecord(path="y.png"))["loras"] == []
