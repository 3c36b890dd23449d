"""What every number carries: package versions and the models and settings behind it."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

_PACKAGES = ("sdeval", "numpy", "pillow", "pandas", "scipy", "torch", "torchvision", "onnxruntime",
             "open_clip_torch", "clean-fid", "lpips")


def package_versions() -> dict[str, str | None]:
    """Installed versions read from package metadata (no heavy imports)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
