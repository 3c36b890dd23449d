"""Tiny CLIP models built at test time and saved in their publishers' formats (REFERENCE.md §2).

Nothing is downloaded: open_clip's BPE vocabulary ships in its wheel, the weights are random.
"""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

TINY_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
_names = itertools.count()


def register_tiny(tmp: Path, cfg: dict[str, Any] | None = None) -> str:
    """Write a config JSON named after a fresh model name and register it with open_clip."""
    import open_clip

    name = f"sdeval-tiny-{next(_names)}-{tmp.name[-8:]}"
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(cfg or TINY_CFG))
    open_clip.add_model_config(path)
    return name


def build_random(name: str, seed: int = 0) -> Any:
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    model.eval()
    return model


def save_pt(tmp: Path, seed: int = 0, cfg: dict[str, Any] | None = None) -> tuple[str, Path]:
    """(model name, path of a torch.save'd state dict) — open_clip's file format."""
    import torch

    name = register_tiny(tmp, cfg)
    model = build_random(name, seed)
    path = tmp / f"{name}.pt"
    torch.save(model.state_dict(), path)
    return name, path


def save_local_dir(tmp: Path, seed: int = 0, cfg: dict[str, Any] | None = None) -> Path:
    """A ``local-dir:`` folder: open_clip_config.json + open_clip_model.safetensors."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    name = register_tiny(tmp, cfg)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    directory = tmp / f"{name}-dir"
    directory.mkdir()
    (directory / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": cfg or TINY_CFG,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                           "std": [0.26862954, 0.26130258, 0.27577711],
                           "interpolation": "bicubic", "resize_mode": "shortest"}}))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "open_clip_model.safetensors"))
    return directory


def images(n: int = 6, size: tuple[int, int] = (48, 40), seed: int = 0) -> list[np.ndarray]:
    """Random-ish RGB uint8 images with structure (gradients + noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = size
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * (i + 1)) % 256, (yy * (i + 2)) % 256, ((xx + yy) * 3 + 40 * i) % 256], -1)
        noise = rng.integers(0, 60, size=(h, w, 3))
        out.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return out


def record(path: str = "x.png", prompt: str | None = "a photo of a cat", sha: str | None = None) -> Any:
    from sdeval.inputs.metadata.types import GenerationMetadata
    from sdeval.inputs.record import ImageRecord

    return ImageRecord(path=path, sha256=sha, metadata=GenerationMetadata(prompt=prompt))


# -- a tiny HF CLIP (for torchmetrics) with the same weights as an open_clip model ----------------

def hf_tokenizer_files(directory: Path) -> tuple[Path, Path]:
    """vocab.json + merges.txt for transformers' CLIPTokenizer from open_clip's shipped BPE file."""
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    tok = SimpleTokenizer()
    vocab = directory / "vocab.json"
    encoder = dict(tok.encoder)
    # open_clip names the specials <start_of_text>/<end_of_text>; OpenAI's (and HF's) vocabulary
    # spells them <|startoftext|>/<|endoftext|> with the same ids
    encoder["<|startoftext|>"] = encoder.pop("<start_of_text>")
    encoder["<|endoftext|>"] = encoder.pop("<end_of_text>")
    vocab.write_text(json.dumps(encoder))
    merges = directory / "merges.txt"
    merges.write_text(gzip.open(default_bpe()).read().decode("utf-8"))
    return vocab, merges


def hf_to_open_clip_state(hf_state: dict[str, Any], layers: int) -> dict[str, Any]:
    """Map a transformers CLIPModel state dict onto open_clip's CLIP key names."""
    import torch

    sd: dict[str, Any] = {}

    def blocks(src: str, dst: str) -> None:
        for i in range(layers):
            s, d = f"{src}.encoder.layers.{i}", f"{dst}.resblocks.{i}"
            sd[f"{d}.ln_1.weight"] = hf_state[f"{s}.layer_norm1.weight"]
            sd[f"{d}.ln_1.bias"] = hf_state[f"{s}.layer_norm1.bias"]
            sd[f"{d}.attn.in_proj_weight"] = torch.cat(
                [hf_state[f"{s}.self_attn.{p}_proj.weight"] for p in "qkv"])
            sd[f"{d}.attn.in_proj_bias"] = torch.cat([hf_state[f"{s}.self_attn.{p}_proj.bias"] for p in "qkv"])
            sd[f"{d}.attn.out_proj.weight"] = hf_state[f"{s}.self_attn.out_proj.weight"]
            sd[f"{d}.attn.out_proj.bias"] = hf_state[f"{s}.self_attn.out_proj.bias"]
            sd[f"{d}.ln_2.weight"] = hf_state[f"{s}.layer_norm2.weight"]
            sd[f"{d}.ln_2.bias"] = hf_state[f"{s}.layer_norm2.bias"]
            sd[f"{d}.mlp.c_fc.weight"] = hf_state[f"{s}.mlp.fc1.weight"]
            sd[f"{d}.mlp.c_fc.bias"] = hf_state[f"{s}.mlp.fc1.bias"]
            sd[f"{d}.mlp.c_proj.weight"] = hf_state[f"{s}.mlp.fc2.weight"]
            sd[f"{d}.mlp.c_proj.bias"] = hf_state[f"{s}.mlp.fc2.bias"]

    v, t = "vision_model", "text_model"
    sd["visual.class_embedding"] = hf_state[f"{v}.embeddings.class_embedding"]
    sd["visual.positional_embedding"] = hf_state[f"{v}.embeddings.position_embedding.weight"]
    sd["visual.conv1.weight"] = hf_state[f"{v}.embeddings.patch_embedding.weight"]
    sd["visual.ln_pre.weight"] = hf_state[f"{v}.pre_layrnorm.weight"]
    sd["visual.ln_pre.bias"] = hf_state[f"{v}.pre_layrnorm.bias"]
    blocks(v, "visual.transformer")
    sd["visual.ln_post.weight"] = hf_state[f"{v}.post_layernorm.weight"]
    sd["visual.ln_post.bias"] = hf_state[f"{v}.post_layernorm.bias"]
    sd["visual.proj"] = hf_state["visual_projection.weight"].T.contiguous()
    sd["token_embedding.weight"] = hf_state[f"{t}.embeddings.token_embedding.weight"]
    sd["positional_embedding"] = hf_state[f"{t}.embeddings.position_embedding.weight"]
    blocks(t, "transformer")
    sd["ln_final.weight"] = hf_state[f"{t}.final_layer_norm.weight"]
    sd["ln_final.bias"] = hf_state[f"{t}.final_layer_norm.bias"]
    sd["text_projection"] = hf_state["text_projection.weight"].T.contiguous()
    sd["logit_scale"] = hf_state["logit_scale"]
    return sd


def hf_tiny_pair(tmp: Path, seed: int = 0, negate_text: bool = False) -> tuple[Any, Any, str, Path]:
    """(HF CLIPModel, CLIPProcessor, open_clip model name, open_clip .pt) sharing the same weights.

    ``negate_text`` flips the text projection, which flips the sign of every cosine: random tiny
    models tend to give all pairs one sign, and a comparison wants both.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    vc, tc = TINY_CFG["vision_cfg"], TINY_CFG["text_cfg"]
    config = transformers.CLIPConfig(
        text_config={"vocab_size": tc["vocab_size"], "hidden_size": tc["width"], "intermediate_size": tc["width"] * 4,
                     "num_hidden_layers": tc["layers"], "num_attention_heads": tc["heads"],
                     "max_position_embeddings": tc["context_length"], "hidden_act": "quick_gelu",
                     "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407},
        vision_config={"hidden_size": vc["width"], "intermediate_size": vc["width"] * 4,
                       "num_hidden_layers": vc["layers"], "num_attention_heads": vc["width"] // vc["head_width"],
                       "image_size": vc["image_size"], "patch_size": vc["patch_size"], "hidden_act": "quick_gelu"},
        projection_dim=TINY_CFG["embed_dim"])
    hf_model = transformers.CLIPModel(config).eval()
    # HF's init leaves LayerNorms at identity and small weights; perturb so the test means something
    with torch.no_grad():
        for p in hf_model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        if negate_text:
            hf_model.text_projection.weight.neg_()
    vocab, merges = hf_tokenizer_files(tmp)
    tokenizer = transformers.CLIPTokenizer(str(vocab), str(merges))
    image_processor = transformers.CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": vc["image_size"]}, resample=3, do_center_crop=True,
        crop_size={"height": vc["image_size"], "width": vc["image_size"]}, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
    processor = transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    name = register_tiny(tmp)
    state = hf_to_open_clip_state(hf_model.state_dict(), tc["layers"])
    path = tmp / f"{name}.pt"
    torch.save(state, path)
    return hf_model, processor, name, path
