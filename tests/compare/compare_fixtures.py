"""Arms of generated images with real A1111 metadata (prompt, seed, model), and tiny models for them.

Images are photo crops (scikit-image's photos) at 64 px; a *degraded* arm is the same crops blurred
and washed out, far from the reference photos in any feature space, which a comparison must call a
regression of FID/KID. Models are the test stand-ins of tests/eval and tests/features.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "features"))
from eval_models import save_inception_standin  # noqa: E402

PROMPTS = [f"a photo of subject {i}, detailed" for i in range(10)]


def _photos() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]


def write_arm(directory: Path, *, prompts: Sequence[str] = PROMPTS, seeds: Sequence[int] = (1, 2), rng_seed: int = 0,
              degrade: bool = False, model: str | None = None, names: str = "{p:02d}_{s}.png",
              size: int = 64) -> list[Path]:
    """One image per (prompt, seed) with an A1111 ``parameters`` chunk naming prompt, seed and model."""
    from PIL import Image, ImageFilter
    from PIL.PngImagePlugin import PngInfo

    photos = _photos()
    rng = np.random.default_rng(rng_seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for pi, prompt in enumerate(prompts):
        for seed in seeds:
            src = photos[(pi + seed) % len(photos)]
            h, w = src.shape[:2]
            ch = int(rng.integers(h // 3, h // 2))
            y, x = int(rng.integers(0, h - ch)), int(rng.integers(0, w - ch))
            crop = src[y:y + ch, x:x + ch].astype(np.float32)
            crop = crop * rng.uniform(0.85, 1.15, size=3) + rng.normal(0, 6, crop.shape)
            im = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
            if degrade:
                im = im.filter(ImageFilter.GaussianBlur(6))
                arr = np.asarray(im, dtype=np.float32) * 0.3 + 150
                im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            info = PngInfo()
            params = f"{prompt}\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: {seed}, Size: {size}x{size}"
            if model:
                params += f", Model: {model}"
            info.add_text("parameters", params)
            path = directory / names.format(p=pi, s=seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            im.save(path, pnginfo=info)
            out.append(path)
    return out


def tiny_models(directory: Path) -> list[str]:
    """CLI flags pointing sdeval at a tiny CLIP (768-d, for the aesthetic head), a random aesthetic
    head and the Inception stand-in, all built here."""
    import torch
    from clip_tiny_models import TINY_CFG, save_pt

    from sdeval.metrics.aesthetic import head_class

    directory.mkdir(parents=True, exist_ok=True)
    name, weights = save_pt(directory, seed=3, cfg={**TINY_CFG, "embed_dim": 768})
    torch.manual_seed(4)
    head = directory / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(head_class()().state_dict(), head)
    inception = save_inception_standin(directory, seed=5)
    return ["--clip-model", name, "--clip-pretrained", str(weights),
            "--model-path", f"aesthetic-v2-l14={head}", "--model-path", f"inception-2015-12-05={inception}",
            "--device", "cpu", "--workers", "1", "--batch-size", "8"]
