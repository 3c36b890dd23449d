"""Safe decoding of one image file to an RGB uint8 array.

Rules (documented in the README, pinned by tests):

* only PNG, JPEG and WebP are evaluated; other formats are an error row, not a guess;
* the pixel count is checked from the header *before* decoding against ``max_pixels``
  (default 8192×8192), so a decompression bomb costs nothing; Pillow's own bomb warning is an error;
* EXIF orientation is applied, so the array is what a viewer shows;
* modes: ``1``/``L``/``P``/``CMYK``/``YCbCr`` → RGB through Pillow; 16- and 32-bit integer modes
  (``I;16``, ``I``) are scaled to 8 bits (not clipped, as ``convert("L")`` would);
  alpha (``RGBA``, ``LA``, ``P`` with transparency, ``PA``) is composited over **white**;
* a truncated file is an error (``LOAD_TRUNCATED_IMAGES`` stays off).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from sdeval.core.errors import DecodeError
from sdeval.core.io import DEFAULT_MAX_FILE_BYTES

SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "MPO")  # MPO: multi-picture JPEG from phones
DEFAULT_MAX_PIXELS = 8192 * 8192
ALPHA_BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class DecodeOptions:
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: the largest input file read (bytes); a bigger one is an error row
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES


def open_image(data: bytes, options: DecodeOptions = DecodeOptions()) -> Image.Image:
    """Open (header only) and validate format and size. Raises DecodeError with a reason."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    # Pillow's own limit, set explicitly: it warns above it (an error here) and refuses above 2x
    Image.MAX_IMAGE_PIXELS = options.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"decompression bomb: {exc} (raise the limit with --max-pixels)") from exc
    except Image.UnidentifiedImageError as exc:
        raise DecodeError("cannot identify image file (not an image, or an unknown format)") from exc
    except Exception as exc:  # Pillow raises many types on garbage headers
        raise DecodeError(f"cannot open image: {type(exc).__name__}: {exc}") from exc
    if im.format not in SUPPORTED_FORMATS:
        raise DecodeError(f"unsupported format {im.format} (sdeval evaluates PNG, JPEG and WebP)")
    w, h = im.size
    if w * h > options.max_pixels:
        raise DecodeError(
            f"decompression bomb: {w}x{h} = {w * h:,} pixels exceeds the limit of "
            f"{options.max_pixels:,} (raise it with --max-pixels)")
    return im


def header_exif(im: Image.Image) -> Image.Exif:
    """EXIF without decoding pixels.

    Pillow's ``getexif()`` on a PNG decodes the whole image to look for an eXIf chunk after the
    pixel data; writers (Pillow, ComfyUI, A1111) put it before, where ``info`` already has it. So a
    PNG without ``info["exif"]`` has no EXIF worth a decode: a warm, cached run stays decode-free.
    """
    if im.format == "PNG" and "exif" not in im.info:
        return Image.Exif()
    return im.getexif()


def to_rgb(im: Image.Image) -> np.ndarray:
    """Load pixels, apply EXIF orientation and convert to an (H, W, 3) uint8 RGB array."""
    try:
        im.load()
        im = ImageOps.exif_transpose(im)
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg or "end of file" in msg.lower():
            raise DecodeError(f"truncated file: {msg}") from exc
        raise DecodeError(f"cannot decode image: {msg}") from exc
    except (SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"cannot decode image: {exc}") from exc
    return _mode_to_rgb(im)


def _mode_to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        grey = np.clip(np.rint(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif mode == "P":
        im = im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def decode(data: bytes, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
    return to_rgb(open_image(data, options))
