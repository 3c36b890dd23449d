"""Stand-ins built at test time in their publishers' formats (REFERENCE.md §2), and test images.

* a random Inception TorchScript file with clean-fid's interface: ``.layers`` maps (B, 3, 299, 299) in
  [-1, 1] to something reshapeable to (B, 2048); ``forward(img_0_255, return_features=True)`` resizes
  inside (legacy_tensorflow mode). Convolutions get ``kaiming_normal_``: default init collapses
  the features to ~1e-8;
* a random torchvision AlexNet / VGG-16 state dict, the file the ``lpips-alex`` / ``lpips-vgg`` ids name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

INCEPTION_FILE = "inception-2015-12-05.pt"


def save_inception_standin(directory: Path, seed: int = 0) -> Path:
    """``DIR/inception-2015-12-05.pt`` (the name clean-fid's InceptionV3W loads from a folder)."""
    import torch
    from torch import nn

    class InceptionStandIn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Conv2d(3, 16, 8, stride=8), nn.ReLU(),
                nn.Conv2d(16, 64, 3, stride=2), nn.BatchNorm2d(64), nn.ReLU(),
                nn.Conv2d(64, 2048, 1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1))

        def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            x = nn.functional.interpolate(img, size=(299, 299), mode="bilinear", align_corners=False)
            x = (x - 128.0) / 128.0
            return self.layers(x).reshape(img.shape[0], 2048)

    torch.manual_seed(seed)
    model = InceptionStandIn()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                nn.init.uniform_(m.bias, -0.1, 0.1)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / INCEPTION_FILE
    torch.jit.save(torch.jit.script(model.eval()), str(path))
    return path


def save_tv_backbone(directory: Path, net: str = "alex", seed: int = 0) -> Path:
    """A random torchvision ``alexnet``/``vgg16`` state dict (what download.pytorch.org serves)."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.alexnet(weights=None) if net == "alex" else torchvision.models.vgg16(weights=None)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ("alexnet-random.pth" if net == "alex" else "vgg16-random.pth")
    torch.save(model.state_dict(), path)
    return path


def write_images(directory: Path, n: int, *, seed: int = 0, size: tuple[int, int] | None = None,
                 names: list[str] | None = None, fmt: str = "png") -> list[Path]:
    """``n`` photo-derived RGB images (scikit-image photos, random crops, noise, colour shifts).

    ``size`` fixes the output size; otherwise each image gets its own (72-160 px sides).
    """
    from PIL import Image
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        src = photos[int(rng.integers(len(photos)))]
        h, w = src.shape[:2]
        ch, cw = int(rng.integers(h // 3, h)), int(rng.integers(w // 3, w))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = src[y:y + ch, x:x + cw].astype(np.float32)
        crop = crop * rng.uniform(0.7, 1.3, size=3) + rng.normal(0, rng.uniform(2, 25), crop.shape)
        im = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
        target = size or (int(rng.integers(72, 161)), int(rng.integers(72, 161)))
        im = im.resize(target, Image.BICUBIC)
        name = names[i] if names else f"img_{i:04d}.{fmt}"
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path)
        out.append(path)
    return out


@pytest.fixture(autouse=True)
def restore_offline() -> Iterator[None]:
    """Offline mode set by a test (``--offline``) never leaks into the next one."""
    before = os.environ.get("HF_HUB_OFFLINE")
    yield
    from sdeval.models.cache import reset_offline

    reset_offline()
    if before is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = before
