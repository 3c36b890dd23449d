"""Shared fixtures: small real photos (scikit-image) written as files in each test's tmp dir."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared_paths import FIXTURES, ROOT, SHARED, shared_file  # noqa: F401  (one home: tests/shared_paths.py)


def photo(name: str = "astronaut", size: tuple[int, int] = (512, 512)) -> Image.Image:
    from skimage import data

    arr = getattr(data, name)()
    im = Image.fromarray(arr)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im.resize(size, Image.BICUBIC)


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """No test reads or writes the user's real model/feature cache."""
    import os

    old = os.environ.get("SDEVAL_CACHE_DIR")
    os.environ["SDEVAL_CACHE_DIR"] = str(tmp_path_factory.mktemp("sdeval-cache"))
    yield
    if old is None:
        os.environ.pop("SDEVAL_CACHE_DIR", None)
    else:
        os.environ["SDEVAL_CACHE_DIR"] = old


@pytest.fixture
def model_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private model cache and online mode, whatever the environment or an earlier test set."""
    import sys

    monkeypatch.setenv("SDEVAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SDEVAL_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        monkeypatch.setattr(hub, "HF_HUB_OFFLINE", hub.HF_HUB_OFFLINE)
    yield tmp_path / "cache"
    from sdeval.models.cache import reset_offline

    reset_offline()  # undo a --offline a test ran


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """Three clean 512x512 photos, one black frame, one 500x500 photo, one non-image."""
    d = tmp_path / "outputs"
    d.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        photo(name).save(d / f"{name}.png")
    Image.fromarray(np.zeros((512, 512, 3), np.uint8)).save(d / "black.png")
    photo("rocket", (500, 500)).save(d / "odd_size.png")
    (d / "notes.md").write_text("not an image")
    return d
