"""Result folders for the report tests, made by the real commands on small images built here, with an
XSS corpus written into image metadata and file names."""

from __future__ import annotations

import io
import json
from pathlib import Path
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

#: each payload, if it ever ran, would set window.__xss or change the title
XSS = [
    '<img src=x onerror="window.__xss=1;document.title=\'pwned\'">',
    '</script><script>window.__xss=2;document.title="pwned"</script>',
    'javascript:window.__xss=3',
    '<svg onload="window.__xss=4"><script>window.__xss=4</script></svg>',
    '" onmouseover="window.__xss=5" autofocus onfocus="window.__xss=5" x="',
    "' onfocus='window.__xss=6' autofocus '",
    '</style><style>body{display:none}</style><style>*{background:url(http://127.0.0.1:9/css)}',
    '<iframe src="javascript:top.__xss=7"></iframe><a href="javascript:top.__xss=8">click</a>',
    '<meta http-equiv="refresh" content="0;url=javascript:top.__xss=9">',
    '{{ 7*7 }} {% raw %}<base href="http://127.0.0.1:9/">',
]
#: file names with markup (no '/', no NUL)
XSS_NAMES = ['<img src=x onerror=window.__xss=11>.png', '"><script>window.__xss=12<\\script>.png',
             "';alert(13);'.png", "javascript:top.__xss=14.png"]
#: an arm name is text from the command line or a metadata field (--arms-by): no '=' (NAME=PATH)
ARM_NAME = "cand</script><svg onload'top.__xss()'><style>*{color:red}</style>"
LONG_PROMPT = ("a very long prompt " * 600)[:10_000]
SVG_WITH_SCRIPT = b'<svg xmlns="http://www.w3.org/2000/svg" onload="window.__xss=15"><script>window.__xss=15</script></svg>'


def picture(seed: int, size: int = 64, flat: bool = False) -> Image.Image:
    rng = np.random.default_rng(seed)
    if flat:
        return Image.fromarray(np.full((size, size, 3), 3, np.uint8))
    base = rng.integers(40, 200, size=3)
    grad = np.linspace(-50, 50, size)[None, :, None]
    arr = np.clip(base + grad + rng.integers(-30, 31, size=(size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def a1111_png(path: Path, im: Image.Image, prompt: str, seed: int, negative: str = "") -> Path:
    info = PngInfo()
    text = prompt + (f"\nNegative prompt: {negative}" if negative else "")
    text += f"\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: {seed}, Size: {im.width}x{im.height}, Model: m"
    info.add_text("parameters", text)
    # hostile metadata a thumbnail must not carry: an EXIF block and an XMP packet
    exif = Image.Exif()
    exif[0x010E] = "<script>window.__xss=16</script>"  # ImageDescription
    im.save(path, pnginfo=info, exif=exif.tobytes())
    return path


def hostile_inputs(folder: Path, n_good: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, payload in enumerate(XSS):
        a1111_png(folder / f"xss_{i:02d}.png", picture(i, flat=i % 3 == 0), payload, 1000 + i, negative=payload)
    for i, name in enumerate(XSS_NAMES):
        a1111_png(folder / name, picture(50 + i), f"named {i}", 2000 + i)
    a1111_png(folder / "long_prompt.png", picture(99), LONG_PROMPT, 7)
    (folder / "svg_script.png").write_bytes(SVG_WITH_SCRIPT)  # not an image: an error row
    (folder / "cropped.png").write_bytes(_png(picture(5, size=60)))  # not a multiple of 8: blocked
    for i in range(n_good):
        a1111_png(folder / f"good_{i:02d}.png", picture(200 + i), f"a photo of a cat number {i}", 300 + i)
    return folder


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


POLICY = 'checks = ["blank", "resolution"]\nmin_pass_rate = 0.9\n'


def gate_folder(tmp: Path, n_good: int = 6) -> Path:
    """A real gate run (no model: blank + resolution checks) over the hostile inputs, without report."""
    from sdeval import api

    inputs = hostile_inputs(tmp / "inputs", n_good)
    policy = tmp / "policy.toml"
    policy.write_text(POLICY)
    out = tmp / "gate"
    api.gate([str(inputs)], str(policy), out_dir=out)
    return out


def eval_folder(tmp: Path) -> Path:
    """A real eval run (per-image metrics), plus the set metrics a run with --ref would add."""
    from sdeval.evaluate.set_eval import eval_set

    inputs = hostile_inputs(tmp / "eval_inputs", 4)
    out = tmp / "eval"
    eval_set([str(inputs)], metrics="pixel_std,pixel_max", out_dir=out)
    summary = json.loads((out / "summary.json").read_text())
    summary["set_metrics"] = {"fid": {"value": 41.5, "n_generated": 18, "n_reference": 18, "small_n": True,
                                      "warnings": [XSS[0] + " FID on N=18 is biased"]}}
    summary["protocol"]["set_metrics"] = {"fid": {"feature": "inception", "mode": "clean",
                                                  "model": XSS[1], "weights_sha256": "ab" * 32}}
    summary["fail_if"] = [{"rule": "fid > 50", "value": 41.5, "fired": False}]
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def compare_folder(tmp: Path) -> Path:
    """A real comparison of two arms (prompt + seed pairing) with a hostile arm name and prompts."""
    from sdeval import api

    base, cand = tmp / "arm_base", tmp / "arm_cand"
    base.mkdir(parents=True)
    cand.mkdir(parents=True)
    for p in range(8):
        for s in (1, 2):
            prompt = XSS[p % len(XSS)] + f" subject {p}"
            a1111_png(base / f"{p}_{s}.png", picture(p * 10 + s), prompt, s)
            # the candidate is flatter: pixel_std regresses
            im = picture(p * 10 + s + 500)
            arr = (np.asarray(im, np.float32) - 128) * 0.4 + 128
            a1111_png(cand / f"{p}_{s}.png", Image.fromarray(arr.astype(np.uint8)), prompt, s)
    a1111_png(base / "lonely.png", picture(999), "no partner", 77)
    out = tmp / "compare"
    from sdeval.compare.run import CompareSettings

    api.compare(arms=[f"base={base}", f"{ARM_NAME}={cand}"], metrics="pixel_std,pixel_max", out_dir=out,
                settings=CompareSettings(resamples=200))
    return out
