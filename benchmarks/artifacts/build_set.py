"""Build the labelled artifact benchmark set from clean photos that ship inside PyPI packages.

Sources: scikit-image's bundled photos (``skimage.data``, no download) and matplotlib's
``grace_hopper.jpg`` (public domain; skipped when matplotlib is absent). Each photo gives several
clean crops at short sides 512, 768 and 1024 px; each defect is synthesised at three severities
on top of one clean crop. Photos are split into a *calibration* half (thresholds were chosen on
it) and a *held-out* half (the reported numbers).

Severity parameters of resolution-dependent defects (blur, noise) are defined at the 512 px
analysis scale and scaled with the image, so "moderate blur" looks the same at every size;
the latent grid and seams are defined on the original 8-px lattice, as the VAE makes them.

    python benchmarks/artifacts/build_set.py --out .sdeval-cache/artifacts-bench

writes PNGs and ``labels.csv`` (path, photo, split, variant, size, defect, severity, check, source).

**Real generator outputs.** When ``../shared/calibration/real-outputs`` (87 ComfyUI outputs, MIT,
see its README) is present -- it is on the development machine, not in a CI checkout -- or
``--real DIR`` / ``SDEVAL_REAL_OUTPUTS`` names such a folder, those images join the set too
(``source = real``): each as a clean image at its own size, and each damaged by two of the defects
(round robin over the files, at all three severities), so that thresholds are chosen on, and
false positives counted on, generator outputs and not photos alone. Their halves alternate in file
name order. Without the folder the set is the photos only, and the build says so.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

SIZES: tuple[int, ...] = (512, 768, 1024)
SEVERITIES: tuple[str, ...] = ("mild", "moderate", "severe")
ANALYSIS = 512

#: photo name -> split. Fixed before any threshold was looked at; grey photos are kept because
#: textures (brick, gravel, grass) are the hard negatives for noise and duplication.
SPLIT: dict[str, str] = {
    "astronaut": "calibration", "rocket": "calibration", "hubble_deep_field": "calibration",
    "motorcycle": "calibration", "camera": "calibration", "brick": "calibration",
    "gravel": "calibration", "coins": "calibration",
    "coffee": "heldout", "chelsea": "heldout", "immunohistochemistry": "heldout",
    "retina": "heldout", "grace_hopper": "heldout", "moon": "heldout", "grass": "heldout",
}
#: ``skimage.data.cell`` was in the held-out half until a first look showed it is an out-of-focus
#: micrograph with almost no content: not a clean image (the blur check flags it, rightly).


#: where the real outputs are looked for when neither ``--real`` nor ``SDEVAL_REAL_OUTPUTS`` is set
REAL_DEFAULT = Path(__file__).resolve().parents[2] / ".." / "shared" / "calibration" / "real-outputs"
#: fallback for worktrees that are not next to ``shared/``
REAL_FALLBACK = Path("/work/shared/calibration/real-outputs")
#: how many defects each real output is damaged with (round robin over the applicable ones)
REAL_DEFECTS_PER_IMAGE = 2


def real_dir(explicit: Path | None = None) -> Path | None:
    """The folder of real generator outputs to add, or None when there is none."""
    env = os.environ.get("SDEVAL_REAL_OUTPUTS")
    for cand in (explicit, Path(env) if env else None, REAL_DEFAULT, REAL_FALLBACK):
        if cand is not None and cand.is_dir() and any(cand.glob("*.png")):
            return cand.resolve()
    return None


def load_real(folder: Path) -> dict[str, np.ndarray]:
    """Every PNG of ``folder`` as (H, W, 3) uint8 RGB, keyed by file stem (sorted)."""
    from PIL import Image

    out: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as im:
            out[path.stem] = np.ascontiguousarray(np.asarray(im.convert("RGB")))
    return out


def real_split(names: list[str]) -> dict[str, str]:
    """Alternate halves in file-name order. Seed variants of one prompt sit next to each other,
    so both halves hold near-twins: the held-out figures on real outputs are not independent of
    the calibration half (stated in RESULTS.md)."""
    return {n: ("calibration" if i % 2 == 0 else "heldout") for i, n in enumerate(sorted(names))}


def load_photos() -> dict[str, np.ndarray]:
    """Every available photo as (H, W, 3) uint8 RGB, keyed by name, with its JPEG history removed.

    Several of these photos went through JPEG once: their 8x8 blocks would reappear as an 8-px
    lattice at 1x and 2x scales and make a "clean" image carry exactly the grid the latent_grid
    check looks for (clean generator outputs are VAE decodes saved as PNG, with no such history).
    A rotation by 2 degrees (alternating sign) and a crop to the valid interior breaks that
    alignment; :func:`jpeg_history` puts a pixel-aligned JPEG history back, to measure its effect.
    """
    import skimage.data as data

    photos: dict[str, np.ndarray] = {}
    for i, name in enumerate(SPLIT):
        if name == "grace_hopper":
            try:
                import matplotlib.cbook as cbook
                from PIL import Image
            except ImportError:
                continue
            with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
                img = np.asarray(im.convert("RGB"))
        elif name == "motorcycle":
            img = data.stereo_motorcycle()[0]
        else:
            img = getattr(data, name)()
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        photos[name] = _unalign(np.ascontiguousarray(img[..., :3]), 2.0 if i % 2 else -2.0)
    return photos


def _unalign(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    turned = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    t = np.tan(np.radians(abs(degrees)))
    my, mx = int(np.ceil(w * t / 2)) + 1, int(np.ceil(h * t / 2)) + 1
    return np.ascontiguousarray(turned[my:h - my, mx:w - mx])


# -- clean variants ----------------------------------------------------------------------------
#: (name, crop aspect w/h, crop side as a fraction of the largest crop, crop centre (x, y), flip)
VARIANTS: tuple[tuple[str, float, float, tuple[float, float], bool], ...] = (
    ("full", 1.0, 1.0, (0.5, 0.5), False),
    ("crop_a", 1.0, 0.85, (0.35, 0.4), False),
    ("crop_b", 1.0, 0.85, (0.65, 0.6), True),
    ("wide", 4 / 3, 1.0, (0.5, 0.5), False),
    ("tall", 3 / 4, 1.0, (0.5, 0.5), True),
)


def make_variant(photo: np.ndarray, variant: str, short: int) -> np.ndarray:
    """A crop of ``photo`` at the variant's aspect and zoom, resized to short side ``short``."""
    _, aspect, zoom, (fx, fy), flip = next(v for v in VARIANTS if v[0] == variant)
    h, w = photo.shape[:2]
    if w / h >= aspect:
        cw, ch = int(round(h * aspect * zoom)), int(round(h * zoom))
    else:
        cw, ch = int(round(w * zoom)), int(round(w / aspect * zoom))
    x0 = int(round(np.clip(fx * w - cw / 2, 0, w - cw)))
    y0 = int(round(np.clip(fy * h - ch / 2, 0, h - ch)))
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    if flip:
        crop = crop[:, ::-1]
    scale = short / min(ch, cw)
    size = (round(cw * scale) // 8 * 8, round(ch * scale) // 8 * 8)  # SD sizes are multiples of 8
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(np.ascontiguousarray(crop), size, interpolation=interp))


# -- defects -----------------------------------------------------------------------------------
def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = x / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    y = np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)
    return np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _scale(img: np.ndarray) -> float:
    return min(img.shape[:2]) / ANALYSIS


def blur_gaussian(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    sigma = {"mild": 1.0, "moderate": 2.0, "severe": 3.5}[sev] * _scale(img)
    return cv2.GaussianBlur(img, (0, 0), sigma)


def blur_motion(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    length = {"mild": 5, "moderate": 9, "severe": 15}[sev] * _scale(img)
    k = int(np.ceil(length)) | 1
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    return cv2.filter2D(img, -1, kernel / kernel.sum())


def low_contrast(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    k = {"mild": 0.55, "moderate": 0.35, "severe": 0.2}[sev]
    f = img.astype(np.float32)
    mean = f.mean()
    return _u8(mean + k * (f - mean))


def _exposure(img: np.ndarray, ev: float) -> np.ndarray:
    return _linear_to_srgb(_srgb_to_linear(img.astype(np.float32)) * 2.0 ** ev)


def underexposed(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    return _exposure(img, {"mild": -1.0, "moderate": -2.0, "severe": -3.0}[sev])


def overexposed(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    return _exposure(img, {"mild": 1.0, "moderate": 2.0, "severe": 3.0}[sev])


def oversaturated(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    """The burned look of a too-high CFG: chroma scaled around each pixel's luma, contrast
    stretched around mid-grey, both clipped."""
    k, c = {"mild": (1.6, 1.1), "moderate": (2.2, 1.2), "severe": (3.0, 1.35)}[sev]
    f = img.astype(np.float32)
    luma = (f @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    f = luma + k * (f - luma)
    return _u8(128.0 + c * (f - 128.0))


def noise(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    """Independent Gaussian noise per pixel and channel.

    Sigma (8-bit levels) is what remains at the 512 px analysis scale: the image gets
    ``sigma * s`` (``s`` = short side / 512), which area-averaging by ``s`` brings back to sigma.
    """
    sigma = {"mild": 4.0, "moderate": 8.0, "severe": 16.0}[sev] * _scale(img)
    return _u8(img.astype(np.float32) + rng.normal(0.0, sigma, img.shape).astype(np.float32))


def latent_grid(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    """An 8-px lattice as a bad VAE decode leaves it: per-cell offsets plus faint cell borders."""
    a = {"mild": 1.5, "moderate": 3.0, "severe": 6.0}[sev]
    h, w = img.shape[:2]
    cells = rng.normal(0.0, a, (h // 8 + 1, w // 8 + 1, 1)).astype(np.float32)
    pattern = np.repeat(np.repeat(cells, 8, axis=0), 8, axis=1)[:h, :w]
    border = np.zeros((h, w, 1), np.float32)
    border[::8, :] -= a
    border[:, ::8] -= a
    return _u8(img.astype(np.float32) + pattern + border)


def seam(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    """VAE tiled decoding without blending: 2x2 tiles, each with its own small colour shift."""
    d = {"mild": 3.0, "moderate": 6.0, "severe": 12.0}[sev]
    h, w = img.shape[:2]
    cy = (h // 2 + int(rng.integers(-h // 8, h // 8))) // 8 * 8
    cx = (w // 2 + int(rng.integers(-w // 8, w // 8))) // 8 * 8
    out = img.astype(np.float32)
    signs = rng.permutation([1.0, -1.0, 1.0, -1.0])
    for i, (ys, xs) in enumerate(((slice(0, cy), slice(0, cx)), (slice(0, cy), slice(cx, w)),
                                  (slice(cy, h), slice(0, cx)), (slice(cy, h), slice(cx, w)))):
        out[ys, xs] += signs[i] * d * rng.uniform(0.8, 1.2, 3).astype(np.float32)
    return _u8(out)


def duplication(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    """Repeated content: a pasted patch (mild), two copies side by side (moderate), 2x2 tiles."""
    h, w = img.shape[:2]
    out = img.copy()
    if sev == "severe":
        tile = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        out[: 2 * (h // 2), : 2 * (w // 2)] = np.tile(tile, (2, 2, 1))
    elif sev == "moderate":
        half = w // 2
        x0 = int(rng.integers(0, w - half + 1))
        part = img[:, x0:x0 + half].astype(np.float32)
        left = part + rng.normal(0, 3, part.shape)
        right = part + rng.normal(0, 3, part.shape) + 6.0
        out[:, :half] = _u8(left)
        out[:, half:2 * half] = _u8(right)
    else:
        ph, pw = h // 3, w // 3
        y0, x0 = int(rng.integers(0, h - ph)), int(rng.integers(0, w // 3 - pw // 2 + 1))
        y1, x1 = int(rng.integers(0, h - ph)), int(rng.integers(w // 2, w - pw))
        out[y1:y1 + ph, x1:x1 + pw] = img[y0:y0 + ph, x0:x0 + pw]
    return out


def black(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    """A NaN VAE decode or a safety-checker blackout: zeros, or nearly."""
    h, w = img.shape[:2]
    if sev == "severe":
        return np.zeros_like(img)
    level, sigma = (0.0, 1.0) if sev == "moderate" else (5.0, 1.5)
    return _u8(level + rng.normal(0, sigma, img.shape))


def blank(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    """A flat frame of one colour (constant, with noise, or with a faint gradient)."""
    h, w = img.shape[:2]
    colour = rng.uniform(30, 225, 3).astype(np.float32)
    frame = np.broadcast_to(colour, img.shape).astype(np.float32)
    if sev == "moderate":
        frame = frame + rng.normal(0, 1.0, img.shape)
    elif sev == "mild":
        ramp = np.linspace(-2.0, 2.0, w, dtype=np.float32)[None, :, None]
        frame = frame + ramp + rng.normal(0, 0.8, img.shape)
    return _u8(frame)


def jpeg_history(img: np.ndarray, sev: str, rng: np.random.Generator) -> np.ndarray:
    """Not a generator defect: a clean image once saved as JPEG (quality 90/75/50) on its own
    pixel grid, whose 8x8 blocks are an 8-px lattice. Reported apart, to show what latent_grid
    does with such images; JPEG *files* are skipped by that metric."""
    quality = {"mild": 90, "moderate": 75, "severe": 50}[sev]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _colourful(img: np.ndarray) -> bool:
    """Enough colour for a saturation boost to burn it (Hasler-Suesstrunk colourfulness >= 20)."""
    f = img.astype(np.float32)
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    return float(np.sqrt(rg.var() + yb.var()) + 0.3 * np.hypot(rg.mean(), yb.mean())) >= 20.0


def _normal_key(img: np.ndarray) -> bool:
    """Median luma in [0.15, 0.85]: an exposure shift of a night sky or a snow field is not the
    same defect as one of an ordinarily lit scene, so exposure defects skip such photos."""
    luma = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return 0.15 * 255 <= float(np.median(luma)) <= 0.85 * 255


@dataclass(frozen=True)
class Defect:
    name: str
    check: str  # the check that should catch it ("" for conditions reported apart)
    make: Callable[[np.ndarray, str, np.random.Generator], np.ndarray]
    #: whether the defect applies to a photo (its clean full variant)
    applies: Callable[[np.ndarray], bool] = lambda img: True


DEFECTS: tuple[Defect, ...] = (
    Defect("blur_gaussian", "blur", blur_gaussian),
    Defect("blur_motion", "blur", blur_motion),
    Defect("low_contrast", "low_contrast", low_contrast),
    Defect("underexposed", "exposure", underexposed, _normal_key),
    Defect("overexposed", "exposure", overexposed, _normal_key),
    Defect("oversaturated", "oversaturation", oversaturated, _colourful),
    Defect("noise", "noise", noise),
    Defect("latent_grid", "latent_grid", latent_grid),
    Defect("seam", "latent_grid", seam),
    Defect("duplication", "duplication", duplication),
    Defect("black", "blank", black),
    Defect("blank", "blank", blank),
    Defect("jpeg_history", "", jpeg_history),
)


@dataclass(frozen=True)
class Item:
    photo: str
    split: str
    variant: str
    size: int
    defect: str  # "clean" for none
    severity: str  # "" for clean
    check: str  # "" for clean
    #: "photo" (a crop of a bundled photo) or "real" (a real generator output at its own size)
    source: str = "photo"

    @property
    def filename(self) -> str:
        sev = f"_{self.severity}" if self.severity else ""
        if self.source == "real":
            return f"real/{self.photo}_{self.defect}{sev}.png"
        return f"{self.size}/{self.photo}_{self.variant}_{self.defect}{sev}.png"


def items(photos: dict[str, np.ndarray]) -> Iterator[Item]:
    """The whole set: every clean variant, and every defect on one variant per (photo, defect)."""
    for photo, img in photos.items():
        split = SPLIT[photo]
        reference = make_variant(img, "full", ANALYSIS)
        applicable = [d for d in DEFECTS if d.applies(reference)]
        for size in SIZES:
            for variant, *_ in VARIANTS:
                yield Item(photo, split, variant, size, "clean", "", "")
            for defect in applicable:
                i = DEFECTS.index(defect)
                variant = VARIANTS[i % len(VARIANTS)][0]
                for sev in SEVERITIES:
                    yield Item(photo, split, variant, size, defect.name, sev, defect.check)


def real_items(real: dict[str, np.ndarray]) -> Iterator[Item]:
    """Each real output clean, and damaged by :data:`REAL_DEFECTS_PER_IMAGE` defects at every
    severity, round robin over the defects by *pairs* of files (file ``i`` starts at defect
    ``(i // 2) * per``): the two files of a pair fall in different halves, so each half gets
    every defect (jpeg_history is left out: not a defect). A defect that does not apply to a
    file (exposure on a very dark or bright one, burn on a grey one) passes to the next."""
    split = real_split(list(real))
    pool = [d for d in DEFECTS if d.check]
    for i, (name, img) in enumerate(sorted(real.items())):
        size = min(img.shape[:2])
        yield Item(name, split[name], "native", size, "clean", "", "", "real")
        applicable = [d for d in pool if d.applies(img)]
        chosen: list[Defect] = []
        k = (i // 2) * REAL_DEFECTS_PER_IMAGE
        while len(chosen) < REAL_DEFECTS_PER_IMAGE and applicable:
            d = pool[k % len(pool)]
            k += 1
            if d in applicable and d not in chosen:
                chosen.append(d)
        for defect in chosen:
            for sev in SEVERITIES:
                yield Item(name, split[name], "native", size, defect.name, sev, defect.check, "real")


def _seed(item: Item) -> int:
    return int.from_bytes(hashlib.sha256(item.filename.encode()).digest()[:8], "little")


def render(item: Item, photos: dict[str, np.ndarray]) -> np.ndarray:
    """The RGB image of one item (deterministic: seeded by its file name); real outputs are
    taken as they are, at their own size."""
    if item.source == "real":
        img = photos[item.photo]
    else:
        img = make_variant(photos[item.photo], item.variant, item.size)
    if item.defect == "clean":
        return img
    defect = next(d for d in DEFECTS if d.name == item.defect)
    return np.ascontiguousarray(defect.make(img, item.severity, np.random.default_rng(_seed(item))))


def chosen_photos(per_half: int | None) -> set[str]:
    """The first ``per_half`` photos of each half, in :data:`SPLIT` order (None: all)."""
    names: list[str] = []
    for half in dict.fromkeys(SPLIT.values()):
        names += [p for p, s in SPLIT.items() if s == half][:per_half]
    return set(names)


def build(out: Path, workers: int = 4, per_half: int | None = None, real: Path | None = None,
          use_real: bool = True) -> int:
    """Write the set into ``out``; ``per_half`` photos of each half (None: all; a small set for
    ``benchmarks/run_all.py``). A photo looks the same in a small set as in the whole one. Real
    outputs from :func:`real_dir` join unless ``use_real`` is False."""
    keep = chosen_photos(per_half)
    photos = {name: img for name, img in load_photos().items() if name in keep}
    all_items = list(items(photos))
    folder = real_dir(real) if use_real else None
    if folder is not None:
        reals = load_real(folder)
        all_items += list(real_items(reals))
        photos.update(reals)
        print(f"real outputs: {len(reals)} from {folder}", file=sys.stderr)
    else:
        print("real outputs: none (no ../shared/calibration/real-outputs; --real DIR to add some): "
              "photos only", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        (out / str(size)).mkdir(exist_ok=True)
    (out / "real").mkdir(exist_ok=True)

    def write(item: Item) -> None:
        path = out / item.filename
        if path.exists():
            return
        rgb = render(item, photos)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise RuntimeError(f"could not encode {path}")
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buf.tobytes())
        tmp.replace(path)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(write, all_items))
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "photo", "split", "variant", "size", "defect", "severity", "check", "source"])
        for it in all_items:
            writer.writerow([it.filename, it.photo, it.split, it.variant, it.size, it.defect, it.severity,
                             it.check, it.source])
    return len(all_items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".sdeval-cache/artifacts-bench"))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--photos", type=int, help="only the first N photos of each half (a small set)")
    parser.add_argument("--real", type=Path, help="folder of real generator outputs (PNG) to add "
                        "(default: ../shared/calibration/real-outputs when present)")
    parser.add_argument("--no-real", action="store_true", help="photos only")
    args = parser.parse_args(argv)
    n = build(args.out, args.workers, args.photos, args.real, not args.no_real)
    print(f"{n} images in {args.out} (labels.csv)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
