"""CLIP score + aesthetic: sdeval's one-pass gate vs torchmetrics' CLIPScore plus a separate aesthetic pass.

Both sides run the same ViT-B/32-sized CLIP (random weights, HF format for torchmetrics, the same
weights converted to open_clip's format for sdeval; projection 768 wide so the LAION aesthetic
head's input fits) on the same PNGs in one process run, same batch size, same torch threads.

    python benchmarks/clip_aesthetic_vs_torchmetrics.py --n 200            # speed, cold + warm
    python benchmarks/clip_aesthetic_vs_torchmetrics.py --memory 1000 5000 # peak RSS vs N (tiny model)

Prints images/s, the ratios, and the end-to-end / forward-only throughput ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "features"))
from ratios import record  # noqa: E402  (benchmarks/ is the script's folder)

PROMPTS = ["a photo of an astronaut", "a cup of coffee on a table", "a cat resting", "a rocket on a launch pad",
           "a portrait photo, soft light", "a landscape at sunset", "a city street at night", "a bowl of fruit"]


def make_images(folder: Path, n: int, size: int = 512, seed: int = 0) -> Path:
    """N distinct PNGs (random crops of scikit-image photos + noise) and a manifest with prompts."""
    from PIL import Image
    from skimage import data

    photos = [getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")]
    photos = [Image.fromarray(p).convert("RGB").resize((768, 768)) for p in photos]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["path,prompt"]
    for i in range(n):
        src = photos[i % len(photos)]
        x, y = rng.integers(0, 768 - size, 2)
        arr = np.asarray(src.crop((x, y, x + size, y + size)), dtype=np.int16)
        arr = np.clip(arr + rng.integers(-6, 7, arr.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img_{i:05d}.png", compress_level=1)
        lines.append(f"img_{i:05d}.png,{PROMPTS[i % len(PROMPTS)]}")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def build_models(tmp: Path, arch: str):
    """(hf_model, processor, open_clip name, open_clip weights path, aesthetic head path)."""
    import torch
    import transformers
    from clip_tiny_models import hf_to_open_clip_state, hf_tokenizer_files, register_tiny

    if arch == "vit-b-32":
        v = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
             "image_size": 224, "patch_size": 32}
        t = {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8}
    else:  # tiny: for memory-vs-N runs, where the model is not what is measured
        v = {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
             "image_size": 32, "patch_size": 8}
        t = {"hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2}
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config={**t, "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                     "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407},
        vision_config={**v, "hidden_act": "quick_gelu"}, projection_dim=768)
    hf_model = transformers.CLIPModel(config).eval()
    vocab, merges = hf_tokenizer_files(tmp)
    processor = transformers.CLIPProcessor(
        image_processor=transformers.CLIPImageProcessor(
            size={"shortest_edge": v["image_size"]}, crop_size={"height": v["image_size"], "width": v["image_size"]},
            resample=3, image_mean=[0.48145466, 0.4578275, 0.40821073],
            image_std=[0.26862954, 0.26130258, 0.27577711]),
        tokenizer=transformers.CLIPTokenizer(str(vocab), str(merges)))
    cfg = {"embed_dim": 768, "quick_gelu": True,
           "vision_cfg": {"image_size": v["image_size"], "layers": v["num_hidden_layers"], "width": v["hidden_size"],
                          "head_width": v["hidden_size"] // v["num_attention_heads"], "patch_size": v["patch_size"]},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": t["hidden_size"],
                        "heads": t["num_attention_heads"], "layers": t["num_hidden_layers"]}}
    name = register_tiny(tmp, cfg)
    weights = tmp / f"{name}.pt"
    torch.save(hf_to_open_clip_state(hf_model.state_dict(), v["num_hidden_layers"]), weights)
    from sdeval.metrics.aesthetic import head_class

    head_path = tmp / "aesthetic.pth"
    torch.save(head_class()().state_dict(), head_path)
    return hf_model, processor, name, weights, head_path, cfg


def run_sdeval(manifest: Path, name: str, weights: Path, head: Path, cache: Path, batch: int, workers: int):
    import sdeval
    from sdeval.core.config import TomlSource
    from sdeval.gates.policy import build_policy
    from sdeval.pipeline.run import RunOptions

    policy = build_policy(TomlSource({"rules": ["clip_score < -2 -> reprompt", "aesthetic < -1000 -> reseed"]},
                                     name="benchmark"))
    options = RunOptions(batch_size=batch, workers=workers, cache_path=str(cache), metric_options={
        "clip_model": name, "clip_pretrained": str(weights), "device": "cpu",
        "model_paths": {"aesthetic-v2-l14": str(head)}})
    t0 = time.perf_counter()
    result = sdeval.gate(str(manifest), policy, options=options)
    return time.perf_counter() - t0, result


def run_peer(manifest: Path, hf_model, processor, name: str, weights: Path, head_path: Path, batch: int):
    """What people do today: torchmetrics CLIPScore over the folder, then a separate aesthetic script."""
    import csv

    import open_clip
    import torch
    from PIL import Image
    from torchmetrics.multimodal.clip_score import CLIPScore

    from sdeval.metrics.aesthetic import head_class

    rows = list(csv.DictReader(manifest.open()))
    paths = [manifest.parent / r["path"] for r in rows]
    prompts = [r["prompt"] for r in rows]
    t0 = time.perf_counter()
    metric = CLIPScore(model_name_or_path=lambda: (hf_model, processor))
    with torch.inference_mode():
        for i in range(0, len(paths), batch):
            imgs = [torch.from_numpy(np.asarray(Image.open(p).convert("RGB"))).permute(2, 0, 1)
                    for p in paths[i:i + batch]]
            metric.update(imgs, prompts[i:i + batch])
        clip_value = float(metric.compute())
    t_clip = time.perf_counter() - t0
    # the separate aesthetic pass: decode again, CLIP image forward again, the MLP head
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(weights))
    model.eval()
    head = head_class()()
    head.load_state_dict(torch.load(head_path, map_location="cpu", weights_only=True))
    head.eval()
    scores = []
    with torch.inference_mode():
        for i in range(0, len(paths), batch):
            x = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[i:i + batch]])
            e = model.encode_image(x)
            e = e / e.norm(dim=-1, keepdim=True)
            scores.append(head(e).squeeze(-1))
    total = time.perf_counter() - t0
    return total, t_clip, clip_value, float(torch.cat(scores).mean())


def forward_only(manifest: Path, name: str, weights: Path, batch: int) -> float:
    """Images/s of the CLIP image forward alone on pre-decoded, pre-processed tensors."""
    import csv

    from PIL import Image

    from sdeval.features.clip import ClipImage
    from sdeval.inputs.record import ImageRecord

    ex = ClipImage({"clip_model": name, "clip_pretrained": str(weights), "device": "cpu"})
    rows = list(csv.DictReader(manifest.open()))
    prepared = [ex.prepare(np.asarray(Image.open(manifest.parent / r["path"]).convert("RGB")), ImageRecord(path="x"))
                for r in rows]
    ex.compute(prepared[:batch])  # warm-up: model load, allocator
    t0 = time.perf_counter()
    for i in range(0, len(prepared), batch):
        ex.compute(prepared[i:i + batch])
    return len(prepared) / (time.perf_counter() - t0)


def speed(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        manifest = make_images(tmp / "imgs", args.n)
        hf_model, processor, name, weights, head, _ = build_models(tmp, args.arch)
        cache = tmp / "features.sqlite"
        cold, result = run_sdeval(manifest, name, weights, head, cache, args.batch_size, args.workers)
        warm, result2 = run_sdeval(manifest, name, weights, head, cache, args.batch_size, args.workers)
        # steady state: models already loaded in this process, an empty cache (what a long-running
        # service or a big folder sees once start-up is paid)
        steady, _ = run_sdeval(manifest, name, weights, head, tmp / "fresh.sqlite", args.batch_size, args.workers)
        peer, peer_clip_only, tm_value, _ = run_peer(manifest, hf_model, processor, name, weights, head,
                                                     args.batch_size)
        fwd = forward_only(manifest, name, weights, args.batch_size)
        ours = np.mean([max(100 * r["clip_score"], 0) for r in result.rows])
        n = args.n
        print(f"N={n} images {args.arch} batch={args.batch_size} workers={args.workers} "
              f"torch threads={torch.get_num_threads()} (CPU)")
        print(f"  peer: torchmetrics CLIPScore + separate aesthetic pass   {n / peer:8.1f} images/s "
              f"({peer:.1f} s; CLIPScore alone {peer_clip_only:.1f} s)")
        print(f"  sdeval gate clip_score + aesthetic, cold cache           {n / cold:8.1f} images/s ({cold:.1f} s)"
              f"   ratio {peer / cold:.2f}x")
        print(f"  sdeval gate clip_score + aesthetic, warm cache           {n / warm:8.1f} images/s ({warm:.2f} s)"
              f"   ratio {peer / warm:.1f}x")
        print(f"  sdeval, empty cache, models already loaded              {n / steady:8.1f} images/s ({steady:.1f} s)")
        print(f"  forward-only (pre-decoded tensors)                       {fwd:8.1f} images/s; "
              f"end-to-end / forward-only = {(n / cold) / fwd:.2f} cold start, {(n / steady) / fwd:.2f} steady")
        print(f"  torchmetrics CLIPScore {tm_value:.4f} vs sdeval mean max(100*clip_score,0) {ours:.4f}")
        what = f"CLIP score + aesthetic, {n} images {args.arch}, time: torchmetrics + aesthetic pass / sdeval gate"
        record(f"{what}, cold cache", peer / cold)
        record(f"{what}, warm cache", peer / warm)
        record(f"CLIP gate {args.arch}, throughput: end to end (models loaded) / forward only", (n / steady) / fwd)


def memory(args: argparse.Namespace) -> None:
    """Peak RSS of a whole `sdeval gate` process at several N (a child process each)."""
    peaks: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        _, _, name, weights, head, cfg = build_models(tmp, "tiny")
        import json

        (tmp / f"{name}.json").write_text(json.dumps(cfg))
        for n in args.memory:
            manifest = make_images(tmp / f"imgs{n}", n, size=512)
            code = (f"import open_clip, sys; open_clip.add_model_config({str(tmp / (name + '.json'))!r}); "
                    f"sys.path.insert(0, {str(Path(__file__).parent)!r}); import clip_aesthetic_vs_torchmetrics as b; "
                    f"from pathlib import Path; "
                    f"b.run_sdeval(Path({str(manifest)!r}), {name!r}, Path({str(weights)!r}), Path({str(head)!r}), "
                    f"Path({str(tmp / f'cache{n}.sqlite')!r}), {args.batch_size}, {args.workers})")
            t0 = time.perf_counter()
            child = subprocess.Popen([sys.executable, "-c", code])
            _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not the max over children
            if status != 0:
                raise SystemExit(f"sdeval run at N={n} failed ({status})")
            print(f"N={n:6d}  peak RSS {usage.ru_maxrss / 1024:7.1f} MiB  ({time.perf_counter() - t0:.1f} s)")
            peaks.append((n, usage.ru_maxrss))
    if len(peaks) >= 2:
        (n1, rss1), (n2, rss2) = min(peaks), max(peaks)
        record(f"peak RSS of sdeval gate (tiny CLIP): N={n2} / N={n1}", rss2 / rss1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--arch", choices=["vit-b-32", "tiny"], default="vit-b-32")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--memory", type=int, nargs="*", help="measure peak RSS at these N instead of speed")
    args = ap.parse_args()
    if args.memory:
        memory(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
