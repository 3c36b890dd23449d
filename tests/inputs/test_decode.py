from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sdeval.core.errors import DecodeError
from sdeval.inputs.decode import DecodeOptions, decode, open_image


def enc(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_rgb_roundtrip():
    arr = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    out = decode(enc(Image.fromarray(arr)))
    assert out.dtype == np.uint8 and out.shape == (16, 24, 3)
    assert np.array_equal(out, arr)


def test_16bit_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 64 * 8).reshape(8, 64).astype(np.uint16)
    out = decode(enc(Image.fromarray(ramp)))
    assert out.shape == (8, 64, 3)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert 100 < out[4, 32, 0] < 156  # mid-grey, not white


def test_alpha_composited_over_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red...
    rgba[:2, :, 3] = 255  # ...opaque on the top half, transparent below
    out = decode(enc(Image.fromarray(rgba, "RGBA")))
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[3, 3]) == (255, 255, 255)


def test_la_and_palette_transparency():
    la = Image.new("LA", (4, 4), (0, 0))
    assert tuple(decode(enc(la))[0, 0]) == (255, 255, 255)
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    p.info["transparency"] = 0
    assert tuple(decode(enc(p, transparency=0))[0, 0]) == (0, 0, 255)


def test_mode_1_cmyk():
    assert tuple(decode(enc(Image.new("1", (8, 8), 1)))[0, 0]) == (255, 255, 255)
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # red
    r, g, b = decode(enc(cmyk, "JPEG", quality=95))[4, 4]
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_applied():
    im = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode(enc(im, "JPEG", exif=exif.tobytes()))
    assert out.shape[:2] == (40, 20)


@pytest.mark.parametrize("data, fragment", [
    (b"", "empty file"),
    (b"hello, not an image", "cannot identify"),
])
def test_garbage(data, fragment):
    with pytest.raises(DecodeError, match=fragment):
        decode(data)


def test_truncated():
    data = enc(Image.fromarray(np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)))
    with pytest.raises(DecodeError, match="truncated|cannot decode"):
        decode(data[: len(data) // 2])


def test_bomb_checked_from_header():
    data = enc(Image.new("1", (4000, 4000)))
    with pytest.raises(DecodeError, match="decompression bomb"):
        open_image(data, DecodeOptions(max_pixels=1000 * 1000))
    assert open_image(data, DecodeOptions(max_pixels=5000 * 5000)).size == (4000, 4000)


def test_unsupported_format():
    with pytest.raises(DecodeError, match="unsupported format GIF"):
        decode(enc(Image.new("P", (8, 8)), "GIF"))
