"""Small summaries and image folders for the history tests (no model, no pipeline unless asked)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

T0 = datetime(2026, 1, 1, 3, 0, tzinfo=timezone.utc)


def summary(value: float, night: int = 0, *, metric: str = "pixel_std", higher_is_better: bool = True,
            version: str = "1", images: int = 8, fid: float | None = None, command: str = "eval") -> dict[str, Any]:
    """An eval summary.json as the eval command writes it, with one per-image metric (and fid)."""
    s: dict[str, Any] = {
        "schema_version": 1, "command": command, "passed": True,
        "started_at": (T0 + timedelta(days=night)).isoformat(timespec="seconds"),
        "images": images, "errors": 0, "values": {metric: value},
        "set_metrics": {}, "metrics": {metric: {"n": images, "missing": 0, "mean": value, "min": value - 1,
                                                "median": value, "max": value + 1}},
        "protocol": {"versions": {"sdeval": "0.1.0"},
                     "metrics": {metric: {"name": metric, "version": version, "unit": "u",
                                          "higher_is_better": higher_is_better}},
                     "features": {}, "decode": {"max_pixels": 1}},
        "timing": {"seconds": 1.5, "images_per_second": images / 1.5},
    }
    if fid is not None:
        s["set_metrics"]["fid"] = {"value": fid, "warnings": []}
        s["protocol"]["set_metrics"] = {"fid": {"name": "fid", "version": "1", "higher_is_better": False}}
    return s


def image_folder(path: Path, seed: int, *, n: int = 4, contrast: float = 60.0, size: int = 64) -> Path:
    """``n`` small noise PNGs whose pixel_std is about ``contrast`` (cheap per-image metrics)."""
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.png"):
        old.unlink()
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = np.clip(128 + rng.normal(0, contrast, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(path / f"img{i}.png")
    return path
