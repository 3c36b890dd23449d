"""Report sizes and render times for gate result folders of N images (default 100 and 10,000).

    python benchmarks/report_speed.py                      # N = 100 and 10000 (a few minutes on 2 cores)
    python benchmarks/report_speed.py --n 100 --keep DIR   # one size, keep the folders

Each N: N distinct 512x512 JPEG photos (scikit-image crops with noise; ~8 % black frames and ~4 %
off-size, so that the gate has failures to show first), gated with the model-free blank +
resolution checks (the gate's own time is printed, not the subject), then rendered into report.html,
junit.xml, summary.md and report.csv by the same code ``sdeval report`` runs. Measured: render
seconds (html alone and all formats), report.html size (default: at most 500 images shown, worst
first), and, when Debian's chromium is there, the time the page takes to load in it. Goal from the
reports issue: a 10,000-image gate report stays under 25 MB.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from ratios import record  # noqa: E402

LIMIT_MB = 25.0


def make_images(folder: Path, n: int, size: int = 512) -> None:
    import numpy as np
    from PIL import Image
    from skimage import data

    photos = [np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB"))
              for name in ("astronaut", "coffee", "chelsea", "rocket")]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        if i % 25 == 7:
            arr = np.zeros((size, size, 3), np.uint8)  # blank: reseed
        else:
            src = photos[i % len(photos)]
            h, w = src.shape[:2]
            side = min(h, w) * 3 // 4
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(src[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
            arr = np.asarray(crop, dtype=np.int16) + rng.integers(-6, 7, size=(size, size, 3))
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        im = Image.fromarray(arr)
        if i % 25 == 13:
            im = im.resize((size - 4, size - 4))  # not a multiple of 8: blocked
        im.save(folder / f"img_{i:05d}.jpg", quality=85)


def browser_load_seconds(page: Path) -> float | None:
    chromium = shutil.which("chromium")
    if not chromium:
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        pg = b.new_page()
        t0 = time.perf_counter()
        pg.goto(page.as_uri(), wait_until="load", timeout=120_000)
        seconds = time.perf_counter() - t0
        assert pg.locator("#image-table tbody tr").count() > 0
        b.close()
    return seconds


def run(n: int, work: Path, max_images: int | None = None) -> dict:
    from sdeval import api
    from sdeval.reports import ReportOptions, render

    images = work / f"images_{n}"
    t0 = time.perf_counter()
    if not images.is_dir() or sum(1 for _ in images.iterdir()) != n:  # --keep DIR: made once
        make_images(images, n)
    made = time.perf_counter() - t0
    policy = work / "policy.toml"
    policy.write_text('checks = ["blank", "resolution"]\n')
    out = work / f"gate_{n}"
    t0 = time.perf_counter()
    gated = None
    if not (out / "summary.json").is_file():
        api.gate([str(images)], str(policy), out_dir=out)
        gated = time.perf_counter() - t0
    shown = {} if max_images is None else {"max_images": max_images}
    t0 = time.perf_counter()
    html = render(out, ReportOptions(formats=("html",), **shown))
    html_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    everything = render(out, ReportOptions(formats=("html", "junit", "md", "csv"), **shown))
    all_s = time.perf_counter() - t0
    size = {k: p.stat().st_size for k, p in everything.files.items()}
    load = browser_load_seconds(everything.files["html"])
    return {"n": n, "make_s": made, "gate_s": gated, "html_s": html_s, "all_s": all_s, "sizes": size,
            "shown": html.shown, "left_out": html.left_out, "load_s": load}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[100, 10000])
    ap.add_argument("--keep", type=Path, help="Work folder to keep and reuse: images and gate folders made by an "
                                              "earlier run are rendered again (default: a temporary one, removed).")
    ap.add_argument("--max-images", type=int, help="Images shown in report.html (default: the report's 500).")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="sdeval-report-bench-"))
    try:
        print(f"{'images':>7} {'shown':>6} {'html s':>7} {'all formats s':>13} {'report.html MB':>14} "
              f"{'junit KB':>8} {'csv KB':>7} {'browser load s':>14} {'(gate s)':>8}")
        for n in args.n:
            r = run(n, work, args.max_images)
            mb = r["sizes"]["html"] / 1e6
            load = "-" if r["load_s"] is None else f"{r['load_s']:.2f}"
            print(f"{n:>7} {r['shown']:>6} {r['html_s']:>7.2f} {r['all_s']:>13.2f} {mb:>14.2f} "
                  f"{r['sizes']['junit'] / 1e3:>8.1f} {r['sizes']['csv'] / 1e3:>7.1f} {load:>14} "
                  f"{'kept' if r['gate_s'] is None else format(r['gate_s'], '.1f'):>8}",
                  flush=True)
            record(f"report.html MB / {LIMIT_MB:g} MB limit ({n} images)", mb / LIMIT_MB, "<= 1")
            record(f"render seconds per 1000 images, all formats ({n} images)", 1000 * r["all_s"] / n)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
