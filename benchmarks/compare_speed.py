"""``sdeval compare`` speed: what the comparison costs beyond the features, cold and warm.

* **cold** (empty feature cache): ``sdeval.compare`` of 2 x N images (N/2 prompts x 2 seeds per arm,
  manifests with prompt and seed) on clip_score, aesthetic, fid, kid against an N-image reference,
  next to the features alone — one pipeline pass over the same 3 x N images with the same
  extractors (CLIP image + text, the aesthetic head, Inception), no cache, nothing else. Goal: the
  comparison costs at most 1.1x the features. The models are stand-ins with the real networks'
  cost: a ViT-B/32-sized open_clip model (random weights, 768-d projection so the LAION aesthetic
  head fits) and torchvision's Inception-v3 in clean-fid's TorchScript interface (random weights).
* **warm** (every feature cached by an earlier run): 2 x M images (default M = 1,000) with 10,000
  bootstrap resamples per per-image metric, once with clip_score + aesthetic and once with fid + kid
  added (1,000 label swaps each). Tiny models fill the cache (the cached widths are the real ones:
  768-d CLIP, 2048-d Inception), since a warm run runs no model. Goal: a few seconds.

    python benchmarks/compare_speed.py                       # N = 200 cold, M = 1,000 warm
    python benchmarks/compare_speed.py --n 40 --warm-n 200   # quick

Prints seconds, images/s and the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "features"))
sys.path.insert(0, str(ROOT / "tests" / "eval"))
from ratios import record  # noqa: E402

PROMPTS = ["a photo of an astronaut", "a cup of coffee on a table", "a cat resting", "a rocket on a launch pad",
           "a portrait photo, soft light", "a landscape at sunset", "a city street at night", "a bowl of fruit"]


def make_arm(folder: Path, n: int, size: int, seed: int) -> Path:
    """n PNGs (crops of scikit-image photos + noise), n/2 prompts x 2 seeds, and a manifest naming them."""
    from PIL import Image
    from skimage import data

    photos = [getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")]
    photos = [Image.fromarray(p).convert("RGB").resize((512, 512)) for p in photos]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["path,prompt,seed"]
    for i in range(n):
        src = photos[i % len(photos)]
        c = int(rng.integers(size, 512))
        x, y = (int(v) for v in rng.integers(0, 512 - c + 1, 2))
        arr = np.asarray(src.crop((x, y, x + c, y + c)).resize((size, size)), dtype=np.int16)
        arr = np.clip(arr + rng.integers(-8, 9, arr.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img_{i:05d}.png", compress_level=1)
        prompt = f"{PROMPTS[(i // 2) % len(PROMPTS)]}, variation {i // 2}"
        lines.append(f"img_{i:05d}.png,\"{prompt}\",{i % 2}")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def models(tmp: Path, real_size: bool) -> dict[str, Any]:
    """Metric options pointing at stand-in models (ViT-B/32 + Inception-v3 sized, or tiny)."""
    import torch
    from clip_tiny_models import TINY_CFG, save_pt

    from sdeval.metrics.aesthetic import head_class

    if real_size:
        from fid_vs_cleanfid import save_inception_v3_standin

        cfg = {"embed_dim": 768, "quick_gelu": True,
               "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "head_width": 64, "patch_size": 32},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}
        inception = save_inception_v3_standin(tmp / "inception-2015-12-05.pt")
    else:
        from eval_models import save_inception_standin

        cfg = {**TINY_CFG, "embed_dim": 768}
        inception = save_inception_standin(tmp)
    name, weights = save_pt(tmp, seed=1, cfg=cfg)
    torch.manual_seed(2)
    head = tmp / "aesthetic.pth"
    torch.save(head_class()().state_dict(), head)
    return {"clip_model": name, "clip_pretrained": str(weights), "device": "cpu",
            "model_paths": {"aesthetic-v2-l14": str(head), "inception-2015-12-05": str(inception)}}


def features_alone(manifests: list[Path], options: Any) -> float:
    """One pipeline pass over every image with the comparison's extractors, nothing else (seconds)."""
    from sdeval.features.registry import create_extractor
    from sdeval.inputs.discovery import discover
    from sdeval.pipeline.run import build_metrics, iter_rows

    items = [it for m in manifests for it in discover([str(m)]).items]
    metrics = build_metrics(["clip_score", "aesthetic"], options.metric_options)
    inception = create_extractor("inception", options.metric_options)
    t0 = time.perf_counter()
    for _ in iter_rows(items, metrics, options, extra_extractors=[inception]):
        pass
    return time.perf_counter() - t0


def run_compare(base: Path, cand: Path, ref: Path | None, metrics: str, options: Any, resamples: int,
                out: Path) -> tuple[float, Any]:
    import sdeval
    from sdeval.compare.run import CompareSettings

    t0 = time.perf_counter()
    result = sdeval.compare(arms=[f"base={base}", f"cand={cand}"], metrics=metrics, ref=str(ref) if ref else None, options=options,
                            settings=CompareSettings(resamples=resamples), out_dir=out)
    return time.perf_counter() - t0, result


def cold(args: argparse.Namespace, work: Path) -> None:
    from dataclasses import replace

    from sdeval.pipeline.run import RunOptions

    base = make_arm(work / "cold" / "base", args.n, args.size, 1)
    cand = make_arm(work / "cold" / "cand", args.n, args.size, 2)
    ref = make_arm(work / "cold" / "ref", args.n, args.size, 3).parent
    opts = RunOptions(batch_size=args.batch_size, workers=args.workers, cache=False,
                      metric_options=models(work / "models-real", real_size=True))
    warmup = make_arm(work / "cold" / "warmup", 4, args.size, 4)
    features_alone([warmup], replace(opts, batch_size=4))  # model loading is not what is measured
    t_feat = features_alone([base, cand, ref / "manifest.csv"], opts)
    t_cmp, result = run_compare(base, cand, ref, "clip_score,aesthetic,fid,kid", opts, args.resamples,
                                work / "cold" / "out")
    n = 3 * args.n
    ratio = t_cmp / t_feat
    print(f"cold, {2 * args.n} compared + {args.n} reference images, {args.size} px, ViT-B/32 + Inception-v3 "
          f"stand-ins, {args.resamples} resamples:")
    print(f"  features alone : {t_feat:7.2f} s ({n / t_feat:.1f} images/s)")
    print(f"  sdeval compare : {t_cmp:7.2f} s ({n / t_cmp:.1f} images/s)   ratio {ratio:.3f} (goal <= 1.1)")
    print(f"  statistics + writing: {t_cmp - result.report['timing']['pipeline_seconds'] - result.report['timing']['reference_seconds']:.2f} s")
    record("cold compare / features alone (time)", ratio, "<= 1.1")


def warm(args: argparse.Namespace, work: Path) -> None:
    from sdeval.pipeline.run import RunOptions

    m = args.warm_n
    base = make_arm(work / "warm" / "base", m, 64, 5)
    cand = make_arm(work / "warm" / "cand", m, 64, 6)
    ref = make_arm(work / "warm" / "ref", m, 64, 7).parent
    opts = RunOptions(batch_size=64, workers=args.workers, cache=True, cache_path=str(work / "features.sqlite"),
                      metric_options=models(work / "models-tiny", real_size=False))
    t_fill, _ = run_compare(base, cand, ref, "clip_score,aesthetic,fid,kid", opts, 1000, work / "warm" / "fill")
    print(f"warm, 2 x {m} images ({m // 2} prompts x 2 seeds), every feature cached (filled in {t_fill:.1f} s):")
    for metrics, with_ref in (("clip_score,aesthetic", False), ("clip_score,aesthetic,fid,kid", True)):
        t, result = run_compare(base, cand, ref if with_ref else None, metrics, opts, args.resamples,
                                work / "warm" / metrics.replace(",", "_"))
        timing = result.report["timing"]
        stats_s = t - timing["pipeline_seconds"] - timing["reference_seconds"]
        computed = sum(v["computed"] for v in result.report["features"].values())
        print(f"  {metrics:30s}: {t:6.2f} s (pipeline {timing['pipeline_seconds']:.2f} s, reference "
              f"{timing['reference_seconds']:.2f} s, statistics + writing {stats_s:.2f} s; features computed: "
              f"{computed})")
        record(f"warm compare 2x{m} {metrics} (seconds)", t, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="images per arm, cold (default 200)")
    ap.add_argument("--warm-n", type=int, default=1000, help="images per arm, warm (default 1000)")
    ap.add_argument("--size", type=int, default=256, help="image side in px, cold (default 256)")
    ap.add_argument("--resamples", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--skip-warm", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("SDEVAL_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.dir or Path(tmp)
        os.environ.setdefault("SDEVAL_CACHE_DIR", str(work / "cache"))
        import torch

        print(f"torch threads: {torch.get_num_threads()}, CPU cores: {os.cpu_count()}")
        if not args.skip_cold:
            cold(args, work)
        if not args.skip_warm:
            warm(args, work)


if __name__ == "__main__":
    main()
