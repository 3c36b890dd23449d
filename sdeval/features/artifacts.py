"""Low-level artifact signals, all computed in one pass per image (``artifact_signals``).

Diffusion failures that a new seed fixes (blur, washed-out or burned colours, residual noise,
the 8-px latent grid, VAE tiling seams, tiled content) show up in cheap pixel statistics. They
are computed here once per image, in the decode threads (:meth:`ArtifactSignals.prepare`), and
each metric of :mod:`sdeval.metrics.artifacts` reads one of them.

Most signals depend on resolution (an upscaled image has 2x weaker gradients), so they are
measured after resizing to a fixed short side (:data:`ANALYSIS_SHORT_SIDE`, ``cv2.INTER_AREA``):
one threshold then means the same for a 512 px SD 1.5 image and a 1024 px SDXL one, as a viewer
sees them at the same display size. The latent grid and tiling seams live on the original pixel
lattice (one latent cell = 8 px), so those two are measured at full resolution.

Thresholds and their accuracy: ``sdeval/gates/checks.py`` and ``benchmarks/artifacts/``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Mapping

import numpy as np

from sdeval.core.errors import MetricUnavailableError
from sdeval.features.base import FeatureExtractor
from sdeval.inputs.record import ImageRecord

#: short side every resolution-dependent signal is measured at (SD 1.x native size)
ANALYSIS_SHORT_SIDE = 512
#: the analysis image's long side is at most this many short sides (a 16385x1 strip must not ask
#: OpenCV for a 512 x 8.4M image)
ANALYSIS_MAX_ASPECT = 8
#: beyond this ratio of the sides an image is an error row for the artifact checks: the signals
#: (edge widths, grids, self-similarity) mean nothing on a strip
MAX_ASPECT = 64
#: side of the square centre crop (original pixels) the latent-grid spectrum is taken on
GRID_CROP = 512
#: the VAE's downsampling factor: one latent cell covers 8x8 pixels
LATENT_CELL = 8
#: seams: every ``SEAM_STRIDE``-th row (column) of the full image is sampled
SEAM_STRIDE = 4
#: seams: a lattice column must beat the columns up to this many px away
SEAM_REACH = 3
#: short side of the grey thumbnail the self-similarity search runs on
DUPLICATION_SIDE = 128
#: 8-bit level from which a channel counts as blown (``clipped_highlights``)
HIGHLIGHT_LEVEL = 250
#: chroma (max - min channel, 8-bit) from which a clipped pixel counts as a clipped *colour*
CLIPPED_CHROMA = 64
#: blown highlights: a border-touching neutral-white region at least this share of the image is a
#: backdrop (style), not blown content
BACKDROP_MIN_AREA = 0.10
#: blown highlights: side (analysis px) of the square opening applied to the white mask first
BACKDROP_OPENING = 5
#: Gaussian sigma (analysis px) of the reference blur the edge-width estimate compares against
REF_SIGMA = 2.0
#: noise: side (analysis px) of the blocks whose noise level is estimated separately
NOISE_BLOCK = 16
#: noise: percentile of the block estimates kept (the flattest blocks: noise is everywhere,
#: texture is not)
NOISE_PERCENTILE = 10
#: noise: blocks whose mean is this close to 0 or 255 (where noise is clipped away) are skipped
NOISE_CLIP_MARGIN = 12
INSTALL_HINT = "pip install 'opencv-python-headless>=4.8,<5'"

#: every signal :func:`compute_signals` returns (floats), in a stable order
SIGNALS: tuple[str, ...] = (
    "laplacian_var", "blur", "motion_blur", "contrast", "brightness", "white_point",
    "colourfulness", "saturation", "clipped_colour", "clipped_highlights", "blown_highlights", "noise",
    "latent_grid", "seam", "tile_seam", "duplication",
)

#: four directional pixel steps: horizontal, vertical, both diagonals (diagonal steps are sqrt 2)
_DIRECTIONS: tuple[tuple[int, int, float], ...] = ((0, 1, 1.0), (1, 0, 1.0), (1, 1, 2.0), (1, -1, 2.0))


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise MetricUnavailableError(
            "artifacts", f"OpenCV is not installed ({exc})", INSTALL_HINT) from exc
    return cv2


def analysis_image(image: np.ndarray, short_side: int = ANALYSIS_SHORT_SIDE) -> np.ndarray:
    """``image`` resized so its short side is ``short_side`` (INTER_AREA down, INTER_CUBIC up),
    its long side capped at ``ANALYSIS_MAX_ASPECT`` short sides."""
    cv2 = _cv2()
    h, w = image.shape[:2]
    scale = min(short_side / min(h, w), ANALYSIS_MAX_ASPECT * short_side / max(h, w))
    if scale == 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC)


def _shifted(a: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """Two equally sized views of ``a``, the second displaced by (dy, dx)."""
    h, w = a.shape
    if dx >= 0:
        return a[dy:, dx:], a[: h - dy, : w - dx]
    return a[dy:, : w + dx], a[: h - dy, -dx:]


def edge_widths(grey: np.ndarray) -> list[float]:
    """Estimated Gaussian blur sigma (px) of the image's edges along four directions.

    An edge blurred by ``s`` has gradient energy proportional to ``1/s``; blurring it again by a
    known ``r`` gives ``1/sqrt(s^2 + r^2)``. The ratio ``R`` of the two energies, summed over the
    image (strong edges dominate, flat areas do not count), gives ``s = r / sqrt(R^2 - 1)``: a
    width in pixels that, unlike the variance of the Laplacian, does not depend on contrast or
    exposure. Motion blur widens edges along one direction only, hence four. Capped at 10 px.
    """
    cv2 = _cv2()
    g = grey.astype(np.float32)
    ref = cv2.GaussianBlur(g, (0, 0), REF_SIGMA)
    floor = (REF_SIGMA / 10.0) ** 2
    out = []
    for dy, dx, _ in _DIRECTIONS:
        fine = cv2.norm(*_shifted(g, dy, dx), cv2.NORM_L2SQR)
        coarse = cv2.norm(*_shifted(ref, dy, dx), cv2.NORM_L2SQR)
        ratio = fine / coarse if coarse > 0 else 1.0
        out.append(REF_SIGMA / float(np.sqrt(max(ratio * ratio - 1.0, floor))))
    return out


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the Laplacian: the folk sharpness number (about 100 at 512 px is the usual cut)."""
    cv2 = _cv2()
    _, std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F))
    return float(std[0, 0]) ** 2


def percentiles_u8(grey: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Percentiles (0-255) of a uint8 image from its histogram: exact for 8-bit data, and fast."""
    cv2 = _cv2()
    hist = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist) / max(hist.sum(), 1.0)
    return [float(min(np.searchsorted(cdf, q / 100.0), 255)) for q in qs]


#: the two orthonormal opponent-colour axes, (R-G)/sqrt2 and (R+G-2B)/sqrt6, halved because
#: the 2x2 Haar kernel below is applied unnormalised
_OPPONENT = (np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]) / np.sqrt([[2.0], [6.0]]) * 0.5).astype(np.float32)
_HAAR_HH = np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32)


def chroma_noise(rgb: np.ndarray, vmax: np.ndarray, vmin: np.ndarray) -> float:
    """Noise sigma (8-bit levels) in the two opponent-colour channels, from their flattest blocks.

    Wavelet noise estimation (Donoho; ``skimage.restoration.estimate_sigma``): the finest
    diagonal Haar detail (HH, a 2x2 filter) of a natural image is mostly noise. Texture lands in
    HH too, so instead of one median over the image, the RMS of HH is taken per 16-px block and
    a low percentile of the blocks kept (noise is everywhere, texture is not), skipping blocks
    clipped near black or white. The opponent channels are used because an undersampled
    diffusion image's residual noise is colourful while photographic texture is mostly in luma:
    grey textures (grass, gravel) read as noiseless. Luma-only grain is not what this measures.
    """
    cv2 = _cv2()
    h, w = rgb.shape[:2]
    b = NOISE_BLOCK
    bh, bw = h // b, w // b
    if bh == 0 or bw == 0:
        return float("nan")
    rgb = rgb[: bh * b, : bw * b]
    # HH of each channel (int16, exact), then the opponent mix (HH is linear)
    hh = cv2.filter2D(rgb, cv2.CV_16S, _HAAR_HH, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    opp = np.ascontiguousarray(hh[0::2, 0::2]).astype(np.float32) @ _OPPONENT.T
    energy = cv2.resize(np.ascontiguousarray(opp * opp), (bw, bh), interpolation=cv2.INTER_AREA)  # block means
    energy = energy.reshape(bh, bw, 2).mean(axis=2)
    hi = cv2.resize(vmax[: bh * b, : bw * b], (bw, bh), interpolation=cv2.INTER_AREA)
    lo = cv2.resize(vmin[: bh * b, : bw * b], (bw, bh), interpolation=cv2.INTER_AREA)
    ok = (lo > NOISE_CLIP_MARGIN) & (hi < 255 - NOISE_CLIP_MARGIN)
    values = energy[ok] if np.count_nonzero(ok) >= 4 else energy.ravel()
    return float(np.sqrt(np.percentile(values, NOISE_PERCENTILE)))


def colour_signals(rgb: np.ndarray) -> dict[str, Any]:
    """Colourfulness, mean saturation, clipped colour and highlight fractions of an RGB image.

    Colourfulness (Hasler & Suesstrunk 2003) is ``sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mu_rg^2 +
    mu_yb^2)`` on 0-255 values (about 0 grey, 33 moderately, 59 quite, 109 extremely colourful),
    taken on every other pixel (a global statistic). A *clipped colour* is a pixel with a channel
    at 0 or 255 and chroma >= 64: the burned look of a high CFG, rare in photographs, whose
    natural colourfulness varies too much to threshold.
    """
    cv2 = _cv2()
    r, g, b = cv2.split(rgb)
    vmax = cv2.max(cv2.max(r, g), b)
    vmin = cv2.min(cv2.min(r, g), b)
    opp = cv2.transform(rgb[::2, ::2].astype(np.float32), _HS_AXES)
    mean, std = cv2.meanStdDev(opp)
    chroma = cv2.subtract(vmax, vmin)
    sat = cv2.divide(chroma, vmax, scale=255.0)  # HSV saturation (0 where vmax is 0)
    clipped = ((vmax == 255) | (vmin == 0)) & (chroma >= CLIPPED_CHROMA)
    n = float(vmax.size)
    return {
        "colourfulness": float(np.hypot(*std.ravel()) + 0.3 * np.hypot(*mean.ravel())),
        "saturation": float(cv2.mean(sat)[0]) / 255.0,
        "clipped_colour": float(np.count_nonzero(clipped)) / n,
        "clipped_highlights": float(np.count_nonzero(vmax >= HIGHLIGHT_LEVEL)) / n,
        "blown_highlights": blown_highlights(vmax, vmin),
        "_vmax": vmax,
        "_vmin": vmin,
    }


def blown_highlights(vmax: np.ndarray, vmin: np.ndarray, level: int = HIGHLIGHT_LEVEL,
                     backdrop: float = BACKDROP_MIN_AREA, opening: int = BACKDROP_OPENING) -> float:
    """Fraction of pixels with a channel at ``level`` or above, not counting a white backdrop.

    Illustrations and product shots often sit on a flat white background, which clips half the
    image or more and is style, not an exposure fault. A *backdrop* is a region of neutral white
    (every channel >= ``level``), opened by ``opening`` px (thin highlights are not a backdrop),
    that touches the image border and covers at least ``backdrop`` of the image; its pixels are
    left out. What remains are blown highlights inside the picture: faces, clothes, a pale sky
    whose colour clipped. Known blind spot: a grey image (or a neutral blown sky) overexposed so
    far that a border-touching white region forms looks like a backdrop and reads low.
    """
    cv2 = _cv2()
    n = float(vmax.size)
    clipped = int(np.count_nonzero(vmax >= level))
    if clipped == 0:
        return 0.0
    white = (vmin >= level).astype(np.uint8)
    if opening > 1:
        white = cv2.morphologyEx(white, cv2.MORPH_OPEN, np.ones((opening, opening), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(white, connectivity=8)
    if count <= 1:
        return clipped / n
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    area = stats[:, cv2.CC_STAT_AREA]
    drop = int(sum(int(area[i]) for i in edge if i > 0 and area[i] >= backdrop * n))
    return max(clipped - drop, 0) / n


#: Hasler-Suesstrunk axes: rg = R - G, yb = (R + G) / 2 - B
_HS_AXES = np.array([[1.0, -1.0, 0.0], [0.5, 0.5, -1.0]], np.float32)


def grid_signal(grey_full: np.ndarray, crop: int = GRID_CROP, period: int = LATENT_CELL) -> float:
    """Strength of a ``period``-px lattice in the original pixels: ~1 none, >> 1 a grid.

    On a centre crop (offsets on the lattice), the mean absolute horizontal and vertical
    differences per column and per row (a high-pass residual whose energy piles up on cell
    boundaries whatever the sign of each cell's offset) are Fourier transformed; their power at
    the lattice harmonics ``k * N / period`` (k = 1..period/2-1; Nyquist is left out because
    demosaicing and 2x upscales live there) is divided by the median power of the neighbouring
    frequencies, both summed over harmonics and axes.
    """
    h, w = grey_full.shape[:2]
    side = min(crop, h - 1, w - 1)
    side -= side % period
    if side < 4 * period:
        return float("nan")
    y0 = ((h - side - 1) // 2) // period * period
    x0 = ((w - side - 1) // 2) // period * period
    cv2 = _cv2()
    g = grey_full[y0:y0 + side + 1, x0:x0 + side + 1]
    dx = cv2.reduce(cv2.absdiff(g[:side, 1:], g[:side, :-1]), 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()
    dy = cv2.reduce(cv2.absdiff(g[1:, :side], g[:-1, :side]), 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()
    num = den = 0.0
    step = side / period
    half = max(3, int(step // 4))
    for profile in (dx, dy):
        spec = np.abs(np.fft.rfft(profile - profile.mean())) ** 2
        for k in range(1, period // 2):
            c = int(round(k * step))
            neigh = np.concatenate([spec[max(1, c - half):c - 1], spec[c + 2:c + half + 1]])
            if neigh.size:
                num += float(spec[c])
                den += float(np.median(neigh))
    return num / den if den > 0 else float("nan")


def _column_wins(g: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """For each column boundary ``c`` (between columns c - 1 and c) that has ``reach`` neighbours
    on both sides: the fraction of rows in which its step is the strict maximum within ``reach``.
    Returns (boundaries, fractions). ``g`` is uint8."""
    cv2 = _cv2()
    d = cv2.absdiff(g[:, 1:], g[:, :-1])  # d[:, c - 1]: the step between columns c - 1 and c
    if d.shape[1] < 2 * reach + 1:
        return np.zeros(0, np.int64), np.zeros(0)
    ring = np.ones((1, 2 * reach + 1), np.uint8)
    ring[0, reach] = 0
    others = cv2.dilate(d, ring, borderType=cv2.BORDER_CONSTANT, borderValue=0)  # max of the neighbours
    wins = (d > others) & (d >= 2)
    frac = wins.mean(axis=0)[reach:d.shape[1] - reach]
    return np.arange(reach + 1, d.shape[1] - reach + 1), frac


def seam_signals(grey_full: np.ndarray, period: int = LATENT_CELL, reach: int = SEAM_REACH,
                 stride: int = SEAM_STRIDE) -> tuple[float, float]:
    """``(seam, tile_seam)``: straight full-length steps on the latent lattice.

    A VAE tiling seam is a straight discontinuity across the image on a latent-cell boundary: in
    nearly every row, its column has the largest ``|dI/dx|`` within ``reach`` px. ``seam`` is the
    largest such fraction over lattice columns (or rows); by chance about ``1 / (2 reach + 1)``.
    But door frames, window bars and panel borders are straight full-height edges too, and one
    in eight falls on the lattice: ``tile_seam`` is how far the best lattice column beats the
    best column *off* the lattice on the same axis (an image with straight edges has them at any
    column, a tiling seam only on the lattice), the larger over the two axes, floored at 0.
    Rows (columns) are sampled every ``stride`` px: a seam runs through all of them.
    """
    best = excess = 0.0
    for g in (np.ascontiguousarray(grey_full[::stride]), np.ascontiguousarray(grey_full[:, ::stride].T)):
        cols, frac = _column_wins(g, reach)
        on = (cols % period == 0) & (cols >= period) & (cols <= g.shape[1] - period)
        if not on.any():
            continue
        lattice = float(frac[on].max())
        off = float(frac[~on].max()) if (~on).any() else 0.0
        best = max(best, lattice)
        excess = max(excess, lattice - off)
    return best, excess


def seam_signal(grey_full: np.ndarray, period: int = LATENT_CELL, reach: int = SEAM_REACH,
                stride: int = SEAM_STRIDE) -> float:
    """``seam`` of :func:`seam_signals` alone."""
    return seam_signals(grey_full, period, reach, stride)[0]


@lru_cache(maxsize=16)
def _overlap_terms(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For self-correlation of an h x w image (zero-padded to 2h x 2w): FFT of the support,
    overlap count per shift, and the mask of shifts that count as 'elsewhere'."""
    from scipy import fft as sfft

    fh, fw = 2 * h, 2 * w
    ones = sfft.rfft2(np.ones((h, w), np.float32), s=(fh, fw))
    count = sfft.irfft2(ones * np.conj(ones), s=(fh, fw))
    sy = np.fft.fftfreq(fh, 1.0 / fh)[:, None]
    sx = np.fft.fftfreq(fw, 1.0 / fw)[None, :]
    valid = (count >= 0.25 * h * w) & ((np.abs(sy) >= h / 8) | (np.abs(sx) >= w / 8))
    return ones, count, valid


def duplication_signal(grey: np.ndarray, side: int = DUPLICATION_SIDE) -> float:
    """Highest normalised self-correlation of the image's edges at a large shift (0-1).

    The grey image is shrunk to ``side`` px and replaced by its Laplacian (whitened: a natural
    image stops resembling itself after a few pixels), then correlated with itself at every
    shift of at least 1/8 of the size that leaves a quarter of the image overlapping. Tiled or
    copy-pasted content correlates at its repeat offset: 1.0 for exact tiles.
    """
    cv2 = _cv2()
    from scipy import fft as sfft

    small = analysis_image(grey, side).astype(np.float32)
    lap = cv2.Laplacian(small, cv2.CV_32F, ksize=3)
    h, w = lap.shape
    fh, fw = 2 * h, 2 * w
    ones, _, valid = _overlap_terms(h, w)
    spec = sfft.rfft2(lap, s=(fh, fw))
    spec2 = sfft.rfft2(lap * lap, s=(fh, fw))
    num = sfft.irfft2(spec * np.conj(spec), s=(fh, fw))  # sum_x l(x) l(x + s)
    # energy of each of the two overlapping parts at shift s
    e_a = sfft.irfft2(spec2 * np.conj(ones), s=(fh, fw))
    e_b = sfft.irfft2(ones * np.conj(spec2), s=(fh, fw))
    ncc = num[valid] / np.sqrt(np.maximum(e_a[valid] * e_b[valid], 1e-6))
    return float(ncc.max()) if ncc.size else float("nan")


def compute_signals(image: np.ndarray) -> dict[str, float]:
    """Every artifact signal of one (H, W, 3) uint8 RGB image (see :data:`SIGNALS`)."""
    cv2 = _cv2()
    h, w = image.shape[:2]
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise ValueError(f"aspect ratio out of range for the artifact checks: {w}x{h} "
                         f"(at most {MAX_ASPECT}:1)")
    rgb = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    small = analysis_image(rgb)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    grey_full = grey if small is rgb else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    widths = edge_widths(grey)
    p1, p99 = percentiles_u8(grey, (1.0, 99.0))
    colour = colour_signals(small)
    vmax, vmin = colour.pop("_vmax"), colour.pop("_vmin")
    seam, tile_seam = seam_signals(grey_full)
    return {
        "laplacian_var": laplacian_variance(grey),
        "blur": max(widths),
        "motion_blur": max(widths) - min(widths),
        "contrast": (p99 - p1) / 255.0,
        "brightness": float(cv2.mean(grey)[0]) / 255.0,
        "white_point": p99 / 255.0,
        **colour,
        "noise": chroma_noise(small, vmax, vmin),
        "latent_grid": grid_signal(grey_full),
        "seam": seam,
        "tile_seam": tile_seam,
        "duplication": duplication_signal(grey),
    }


class ArtifactSignals(FeatureExtractor):
    """All artifact signals of an image as a dict of floats, computed in the decode threads."""

    id: ClassVar[str] = "artifact_signals"
    version: ClassVar[str] = "3"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    def check_available(self) -> None:
        _cv2()

    def prepare(self, image: np.ndarray, record: ImageRecord) -> dict[str, float]:
        return compute_signals(image)

    def protocol(self) -> dict[str, Any]:
        cv2 = _cv2()
        return {
            "id": self.id,
            "version": self.version,
            "analysis_short_side": ANALYSIS_SHORT_SIDE,
            "resize": "cv2.INTER_AREA to the analysis short side (INTER_CUBIC for smaller images)",
            "latent_grid": f"original pixels, centre crop {GRID_CROP} px, {LATENT_CELL}-px lattice",
            "seam": f"original pixels, every {SEAM_STRIDE}th line, {LATENT_CELL}-px lattice",
            "duplication": f"grey thumbnail, short side {DUPLICATION_SIDE} px",
            "opencv": cv2.__version__,
            "numpy": np.__version__,
        }
