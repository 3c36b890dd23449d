"""FID: sdeval (cold and warm feature cache) vs clean-fid's ``compute_fid``, side by side in one run.

Same generated and reference folders (N vs N 512-px PNGs made from scikit-image photos with random
crops, colour shifts and noise), the same Inception TorchScript file, CPU, the same batch size and
the same number of loader workers (clean-fid: DataLoader processes; sdeval: decode threads).

The Inception file is a stand-in with the real network's cost: torchvision's Inception-v3
architecture (random kaiming-initialised weights) wrapped in clean-fid's TorchScript interface
(``.layers`` on [-1, 1] 299x299 input; ``forward(x, return_features=True)``). Speed is what is
measured; with ``--weights FILE`` the real ``inception-2015-12-05.pt`` is used instead.

    python benchmarks/fid_vs_cleanfid.py --n 2000            # the issue's size (2,000 vs 2,000)
    python benchmarks/fid_vs_cleanfid.py --n 300 --workers 2 --batch-size 32

Prints images/s per side, the ratios (end to end, and features only: clean-fid's total minus its
``frechet_distance``, which is scipy's ``sqrtm`` on 2048 x 2048), and the FID difference.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ratios import record  # noqa: E402  (benchmarks/ is the script's folder)


def make_images(folder: Path, n: int, size: int = 512, seed: int = 0) -> Path:
    """N distinct RGB PNGs: random crops of scikit-image photos, colour gains, Gaussian noise."""
    from PIL import Image
    from skimage import data

    photos = [getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket",
                                                  "immunohistochemistry", "hubble_deep_field")]
    photos = [np.asarray(Image.fromarray(p).convert("RGB").resize((1024, 1024), Image.BICUBIC)) for p in photos]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = photos[int(rng.integers(len(photos)))]
        c = int(rng.integers(384, 1024))
        y, x = (int(v) for v in rng.integers(0, 1024 - c + 1, size=2))
        crop = src[y:y + c, x:x + c].astype(np.float32) * rng.uniform(0.75, 1.25, size=3)
        crop += rng.normal(0.0, rng.uniform(1, 12), crop.shape)
        im = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        im.save(folder / f"{i:05d}.png", compress_level=1)
    return folder


def save_inception_v3_standin(path: Path, seed: int = 0) -> Path:
    """torchvision's Inception-v3 trunk (random, kaiming) in clean-fid's TorchScript interface."""
    import torch
    import torchvision
    from torch import nn

    torch.manual_seed(seed)
    tv = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    for m in tv.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)

    class InceptionStandIn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                tv.Conv2d_1a_3x3, tv.Conv2d_2a_3x3, tv.Conv2d_2b_3x3, tv.maxpool1, tv.Conv2d_3b_1x1,
                tv.Conv2d_4a_3x3, tv.maxpool2, tv.Mixed_5b, tv.Mixed_5c, tv.Mixed_5d, tv.Mixed_6a, tv.Mixed_6b,
                tv.Mixed_6c, tv.Mixed_6d, tv.Mixed_6e, tv.Mixed_7a, tv.Mixed_7b, tv.Mixed_7c, tv.avgpool)

        def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            x = nn.functional.interpolate(img, size=(299, 299), mode="bilinear", align_corners=False)
            x = (x - 128.0) / 128.0
            return self.layers(x).reshape(img.shape[0], 2048)

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(InceptionStandIn().eval()), str(path))
    return path


def run_sdeval(gen: Path, ref: Path, weights: Path, cache: Path, batch: int, workers: int) -> tuple[float, float, Any]:
    from sdeval.evaluate.set_eval import eval_set
    from sdeval.pipeline.run import RunOptions

    opts = RunOptions(batch_size=batch, workers=workers, cache_path=str(cache),
                      metric_options={"model_paths": {"inception-2015-12-05": str(weights)}, "device": "cpu",
                                      "batch_size": batch})
    t = time.perf_counter()
    result = eval_set(str(gen), ref=str(ref), metrics="fid", options=opts, distributed=False)
    return time.perf_counter() - t, float(result.values["fid"]), result


def run_cleanfid(gen: Path, ref: Path, weights: Path, batch: int,
                 workers: int) -> tuple[float, float, float, float]:
    """(total seconds, FID, seconds inside frechet_distance, FID of clean-fid's mu/sigma by sdeval's exact formula)."""
    import torch
    from cleanfid import fid as cf
    from cleanfid.inception_torchscript import InceptionV3W

    from sdeval.metrics.distances import frechet_distance

    spent = [0.0]
    exact = [float("nan")]
    original = cf.frechet_distance

    def timed(*args: Any, **kwargs: Any) -> float:
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t
            exact[0] = frechet_distance(*args[:4])

    cf.frechet_distance = timed
    try:
        t = time.perf_counter()
        model = InceptionV3W(str(weights.parent), download=False, resize_inside=False).eval()
        value = cf.compute_fid(str(gen), str(ref), mode="clean", custom_feat_extractor=model,
                               num_workers=workers, batch_size=batch, device=torch.device("cpu"), verbose=False)
        return time.perf_counter() - t, float(value), spent[0], exact[0]
    finally:
        cf.frechet_distance = original


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="images per folder (default 2000)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--weights", type=Path, help="a real inception-2015-12-05.pt (default: a stand-in)")
    ap.add_argument("--dir", type=Path, help="work folder (default: a temp dir)")
    ap.add_argument("--skip-cleanfid", action="store_true")
    args = ap.parse_args()

    import torch

    work = args.dir or Path(tempfile.mkdtemp(prefix="sdeval-fid-bench-"))
    os.environ["SDEVAL_CACHE_DIR"] = str(work / "cache")
    gen, ref = work / "gen", work / "ref"
    t = time.perf_counter()
    if not gen.exists():
        make_images(gen, args.n, seed=1)
    if not ref.exists():
        make_images(ref, args.n, seed=2)
    weights = args.weights or work / "weights" / "inception-2015-12-05.pt"
    if not weights.exists():
        save_inception_v3_standin(weights)
    if weights.name != "inception-2015-12-05.pt":  # clean-fid's InceptionV3W loads DIR/inception-2015-12-05.pt
        raise SystemExit("--weights must be named inception-2015-12-05.pt")
    total = 2 * args.n
    print(f"{args.n} vs {args.n} 512-px PNGs in {work} (made in {time.perf_counter() - t:.1f} s); "
          f"batch {args.batch_size}, workers {args.workers}, torch threads {torch.get_num_threads()}, "
          f"weights {'stand-in (torchvision Inception-v3 trunk, random)' if not args.weights else weights}",
          flush=True)

    cache = work / "features.sqlite"
    if cache.exists():
        cache.unlink()
    cold_s, cold_fid, cold = run_sdeval(gen, ref, weights, cache, args.batch_size, args.workers)
    print(f"sdeval cold : {cold_s:8.2f} s  {total / cold_s:8.1f} images/s  FID {cold_fid:.6f}", flush=True)
    warm_s, warm_fid, warm = run_sdeval(gen, ref, weights, cache, args.batch_size, args.workers)
    hits = sum(warm.summary[key]["inception"]["cache_hits"] for key in ("features", "reference_features"))
    print(f"sdeval warm : {warm_s:8.2f} s  {total / warm_s:8.1f} images/s  FID {warm_fid:.6f}  "
          f"({hits}/{total} features from the cache)", flush=True)
    if args.skip_cleanfid:
        return
    cf_s, cf_fid, cf_frechet, cf_exact = run_cleanfid(gen, ref, weights, args.batch_size, args.workers)
    cf_feat = cf_s - cf_frechet
    print(f"clean-fid   : {cf_s:8.2f} s  {total / cf_s:8.1f} images/s  FID {cf_fid:.6f}  "
          f"(of which frechet_distance/sqrtm {cf_frechet:.2f} s; features {cf_feat:.2f} s = "
          f"{total / cf_feat:.1f} images/s)", flush=True)
    for label, secs in (("cold", cold_s), ("warm", warm_s)):
        print(f"ratio {label}  : {cf_s / secs:6.2f}x end to end, {cf_feat / secs:6.2f}x against clean-fid's "
              f"features alone")
        record(f"FID {args.n} vs {args.n}, time: clean-fid compute_fid / sdeval {label} cache", cf_s / secs)
        record(f"FID {args.n} vs {args.n}, time: clean-fid features alone / sdeval {label} cache", cf_feat / secs)
    print(f"FID difference: {abs(cold_fid - cf_fid):.3g} absolute, {abs(cold_fid - cf_fid) / abs(cf_fid):.3g} relative "
          f"to compute_fid; {abs(cold_fid - cf_exact) / abs(cf_exact):.3g} relative to clean-fid's mu/sigma through "
          f"the exact Fréchet formula (FID {cf_exact:.6f}: the rest is scipy sqrtm's error on a singular product)")


if __name__ == "__main__":
    main()
