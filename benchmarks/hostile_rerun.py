"""Issue 10's attack, re-run: crashes, hangs, unhandled exceptions and unguarded CSV cells (all must be 0).

    .venv/bin/python benchmarks/hostile_rerun.py [--fuzz 10500] [--seed 0]

1. The hostile corpus (``tests/hostile_corpus.py``: bombs, truncations, a FIFO, a link to /dev/zero,
   markup and surrogates in names and metadata, huge numbers, CSV injection...) gated end to end by the
   real CLI in a subprocess: exit 3 or a traceback is a crash, no end within the limit a hang, a file
   without a row is lost, a CSV cell starting with ``= + - @ \\t \\r`` unguarded; the CSV is parsed back
   with Python's csv module and pandas (rows == records).
2. ``--fuzz`` metadata chunks: real-shaped A1111 infotexts and ComfyUI graphs, mutated (byte flips,
   splices, huge numbers, surrogates, deep nesting), each read as a PNG chunk by the real reader: any
   escaping exception is unhandled, any read over 1 s a hang.
3. The named worst cases: a 64 MB one-line ``parameters`` chunk, a 31-node StringConcatenate fan-out,
   3,000 SaveImage nodes on a chain, a 10 MB line in a WebP EXIF UserComment (each must read in < 1 s).

Read times are CPU seconds of this process (``time.process_time``), not wall time.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from hostile_corpus import build  # noqa: E402
from ratios import record  # noqa: E402

from sdeval.inputs.metadata.reader import read_metadata  # noqa: E402

GUARDED = ("=", "+", "-", "@", "\t", "\r")
INFOTEXT = ("a photo of a cat, (masterpiece:1.2), <lora:detail:0.8>\nNegative prompt: blurry, lowres\n"
            "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
            "Model hash: abcdef1234, Model: sd15, Hires upscale: 2, Version: v1.9.4")
GRAPH = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 20, "cfg": 7.0, "sampler_name": "euler",
                                               "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                               "positive": ["6", 0], "negative": ["7", 0],
                                               "latent_image": ["5", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "ComfyUI"}},
}
NASTY = ["\ud800", "1" + "0" * 5000, "=1+1", "\r=cmd|' /C calc'!A0", "<script>x</script>", "[bold]", "\x00",
         "-1e309", "NaN", "[[[[[[[[", "{\"a\":" * 200, "\\", "\"", "9" * 400 + "x512"]


def _mutate(rng: np.random.Generator, text: str) -> str:
    chars = list(text)
    for _ in range(int(rng.integers(1, 12))):
        op = int(rng.integers(0, 5))
        pos = int(rng.integers(0, len(chars) + 1))
        if op == 0 and chars:  # flip one character
            chars[min(pos, len(chars) - 1)] = chr(int(rng.integers(0, 0x3000)))
        elif op == 1:  # insert a nasty token
            chars[pos:pos] = list(NASTY[int(rng.integers(0, len(NASTY)))])
        elif op == 2 and chars:  # delete a span
            del chars[pos:pos + int(rng.integers(1, 40))]
        elif op == 3:  # splice a span of itself elsewhere
            a = int(rng.integers(0, max(1, len(chars))))
            chars[pos:pos] = chars[a:a + int(rng.integers(1, 200))]
        else:  # repeat a span many times
            a = int(rng.integers(0, max(1, len(chars))))
            chars[pos:pos] = chars[a:a + 8] * int(rng.integers(2, 2000))
    return "".join(chars)


def _fuzz_graph(rng: np.random.Generator) -> str:
    g = json.loads(json.dumps(GRAPH))
    for _ in range(int(rng.integers(1, 6))):
        nid = str(rng.choice(list(g)))
        inputs = g[nid]["inputs"]
        key = str(rng.choice(list(inputs) + ["text", "seed", "width", "string_a"]))
        pick = int(rng.integers(0, 6))
        inputs[key] = ([str(rng.choice(list(g))), int(rng.integers(-2, 4))] if pick < 2 else
                       NASTY[int(rng.integers(0, len(NASTY)))] if pick < 4 else
                       int(rng.integers(-2**63, 2**63 - 1)) if pick == 4 else 10 ** int(rng.integers(300, 4200)))
        if rng.random() < 0.2:
            g[nid]["class_type"] = str(rng.choice(["StringConcatenate", "LatentUpscaleBy", "ImageScale", "X"]))
    text = json.dumps(g)
    return _mutate(rng, text) if rng.random() < 0.5 else text


def _png_bytes(chunks: dict[str, str]) -> bytes:
    info = PngInfo()
    for k, v in chunks.items():
        info.add_itxt(k, v.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _read(data: bytes) -> None:
    """What the loader does with a file's bytes: open them, read every metadata format."""
    read_metadata(Image.open(io.BytesIO(data)))


def _timed(fn) -> tuple[float, BaseException | None]:
    """CPU seconds (this process), so a busy machine does not turn a fast read into a "hang"."""
    t = time.process_time()
    try:
        fn()
        return time.process_time() - t, None
    except BaseException as exc:  # noqa: BLE001 - counting what escapes is the point
        return time.process_time() - t, exc


def corpus_run(tmp: Path, limit_s: float) -> dict[str, int | float]:
    root = tmp / "corpus"
    root.mkdir()
    cases = build(root)
    out = tmp / "out"
    cmd = [sys.executable, "-m", "sdeval", "gate", str(root), "--policy", "offline", "--check", "artifacts",
           "--no-cache", "--out", str(out)]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit_s, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        hung, code, text = 0, proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        hung, code, text = 1, -1, ""
    wall = time.perf_counter() - t
    crash = int(code == 3 or "Traceback" in text or not (out / "results.jsonl").exists())
    records = [json.loads(line) for line in (out / "results.jsonl").read_text("utf-8").splitlines()] \
        if not crash and not hung else []
    seen = {str(Path(r["path"]).relative_to(root)) for r in records}
    lost = sum(c.name not in seen for c in cases) if records else len(cases)
    wrong = 0
    by_name = {str(Path(r["path"]).relative_to(root)): r for r in records}
    for c in cases:
        r = by_name.get(c.name)
        if r is not None and (c.expect == "error") != (r["verdict"] == "error"):
            wrong += 1
    unguarded = csv_rows = pandas_rows = 0
    if records:
        import pandas as pd

        with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        csv_rows = len(rows) - 1
        pandas_rows = len(pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False))
        unguarded = sum(cell.lstrip(" ").startswith(GUARDED) for row in rows[1:] for cell in row)
    return {"files": len(cases), "exit": code, "crash": crash, "hang": hung, "lost": lost, "wrong": wrong,
            "records": len(records), "csv_rows": csv_rows, "pandas_rows": pandas_rows, "unguarded": unguarded,
            "wall_s": wall}


def fuzz_run(n: int, seed: int) -> dict[str, int | float]:
    rng = np.random.default_rng(seed)
    unhandled = slow = 0
    worst = 0.0
    for i in range(n):
        chunks: dict[str, str] = {}
        kind = i % 3
        if kind == 0:
            chunks["parameters"] = _mutate(rng, INFOTEXT)
        elif kind == 1:
            chunks["prompt"] = _fuzz_graph(rng)
        else:
            chunks["parameters"] = _mutate(rng, INFOTEXT)
            chunks["prompt"] = _fuzz_graph(rng)
            chunks["workflow"] = _mutate(rng, "{\"nodes\": [], \"links\": []}")
        try:
            data = _png_bytes(chunks)
        except Exception:  # noqa: BLE001 - Pillow refused to write it: not the reader's input
            continue
        took, exc = _timed(lambda: _read(data))
        worst = max(worst, took)
        unhandled += exc is not None
        slow += took > 1.0
    return {"chunks": n, "unhandled": unhandled, "over_1s": slow, "worst_s": worst}


def worst_cases() -> list[tuple[str, float, BaseException | None]]:
    sys.path.insert(0, str(ROOT / "tests" / "inputs"))
    from test_metadata_hostile import _fan_graph, _saver_chain  # noqa: PLC0415

    out = []
    line = "a cat\nSteps: 20, Seed: 3, Size: 512x512, " + "a" * 64_000_000
    files = {"64 MB one-line parameters chunk": _png_bytes({"parameters": line}),
             "31-node StringConcatenate fan-out": _png_bytes({"prompt": json.dumps(_fan_graph(31))}),
             "3,000 SaveImage nodes on a chain": _png_bytes({"prompt": json.dumps(_saver_chain(3000))})}
    for name, data in files.items():
        out.append((name, *_timed(lambda data=data: _read(data))))
    exif = Image.Exif()
    text = "a cat\nSteps: 20, Seed: 3, Size: 16x16, " + "x" * 10_000_000
    exif[0x8769] = {0x9286: b"UNICODE\0" + text.encode("utf-16-be")}
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "WEBP", exif=exif.tobytes())
    data = buf.getvalue()
    out.append(("10 MB line in a WebP EXIF UserComment", *_timed(lambda: _read(data))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fuzz", type=int, default=10_500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=float, default=600.0, help="seconds before the corpus run counts as hung")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        c = corpus_run(Path(tmp), args.limit)
    f = fuzz_run(args.fuzz, args.seed)
    w = worst_cases()
    print("| attack | inputs | crashes | hangs | unhandled | lost | unguarded cells | figure |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| hostile corpus, gated end to end (exit {c['exit']}) | {c['files']} files | {c['crash']} | {c['hang']} "
          f"| - | {c['lost']} | {c['unguarded']} | {c['records']} records, csv {c['csv_rows']} / pandas "
          f"{c['pandas_rows']} rows, {c['wrong']} wrong verdict kind, {c['wall_s']:.1f} s |")
    print(f"| fuzzed metadata chunks | {f['chunks']} | 0 | {f['over_1s']} | {f['unhandled']} | - | - "
          f"| slowest read {f['worst_s'] * 1000:.0f} ms |")
    for name, took, exc in w:
        print(f"| {name} | 1 | 0 | {int(took > 1.0)} | {int(exc is not None)} | - | - | {took * 1000:.0f} ms |")
    bad = (c["crash"] + c["hang"] + c["lost"] + c["unguarded"] + f["unhandled"] + f["over_1s"]
           + sum(exc is not None or took > 1.0 for _, took, exc in w)
           + int(c["csv_rows"] != c["records"] or c["pandas_rows"] != c["records"]))
    print(f"\n{'all 0' if bad == 0 else f'{bad} FAILURES'}")
    record("failures / attacks", bad / (c["files"] + f["chunks"] + len(w)), "<= 0")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
