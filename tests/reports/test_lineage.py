"""A gate run with regeneration (against the in-process fake ComfyUI) ends with a report showing each
image's lineage: a strip of attempt thumbnails with seed and verdict, acceptance rate and attempts
per accepted image."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from comfy_fake import FakeComfyUI, add_comfy_metadata, sd_graph  # noqa: E402

from sdeval.cli import main  # noqa: E402


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def by_parity(graph: dict) -> bytes:
    """Black for even seeds (reseed), a plausible picture for odd ones (pass)."""
    seed = int(next(n["inputs"]["seed"] for n in graph.values() if n["class_type"] == "KSampler"))
    if seed % 2 == 0:
        return png(np.zeros((64, 64, 3)))
    rng = np.random.default_rng(seed % 2 ** 63)
    return png(np.clip(rng.integers(60, 200, size=3) + rng.integers(-40, 41, size=(64, 64, 3)), 0, 255))


def test_regeneration_lineage_in_the_report(tmp_path: Path):
    inputs = tmp_path / "outputs"
    inputs.mkdir()
    for i in range(3):
        (inputs / f"black_{i}.png").write_bytes(add_comfy_metadata(png(np.zeros((64, 64, 3))),
                                                                   sd_graph(2 * i + 2, f"a red fox {i}")))
    (inputs / "good.png").write_bytes(add_comfy_metadata(by_parity(sd_graph(7, "a cat")), sd_graph(7, "a cat")))
    policy = tmp_path / "gates.toml"
    policy.write_text('checks = ["blank"]\n')
    out = tmp_path / "res"
    with FakeComfyUI(generator=by_parity) as fake:
        r = CliRunner().invoke(main, ["gate", str(inputs), "--policy", str(policy), "--out", str(out),
                                      "--regenerate", "comfyui", "--comfy-url", fake.url, "--max-attempts", "4"],
                               catch_exceptions=False)
    # seeds are drawn per image: some lineages pass within 4 attempts, some may run out (exit 1)
    assert r.exit_code in (0, 1) and "report: " in r.output, r.output
    summary = json.loads((out / "summary.json").read_text())["regeneration"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "acceptance rate" in page and f"{summary['acceptance_rate'] * 100:.1f}%" in page
    assert "attempts per accepted image" in page
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    attempts = sum(len((r.get("regeneration") or {}).get("attempts") or []) for r in rows)
    assert attempts == summary["attempts"] >= 3
    steps = re.findall(r'<div class="step">(.*?)</div></div>', page, re.S)
    assert page.count('class="step"') == attempts + 3  # each original + its attempts
    assert page.count('<div class="strip">') == 3
    assert all("data:image/webp" in s for s in steps)
    seeds = [a["seed"] for r in rows for a in (r.get("regeneration") or {}).get("attempts") or []]
    assert all(f"seed {s}" in page for s in seeds)
