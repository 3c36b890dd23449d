"""The blind pairwise preference form (``human/index.html``) and its key (``human/pairs.json``).

The page shows two images of one pair (same prompt and seed, two arms) with the sides drawn at
random per pair and no arm name anywhere in it; the key that says which arm is left lives in
pairs.json, next to the page, read back by :func:`sdeval.compare.votes.add_votes`. The page works
offline from the file (images inline), takes 1 / 2 / 0 for left / right / tie, keeps progress in the
browser's local storage, and exports the votes as a CSV download.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

from sdeval.compare.votes import HUMAN_DIR, PAIRS_FILE, VOTE_COLUMNS
from sdeval.reports.folder import ResultFolder
from sdeval.reports.thumbs import webp_thumbnail

#: pairs put to raters at most (spread over the arms); each is two inline images
MAX_PAIRS = 200
SIDE = 512


def _image(path: str) -> str | None:
    try:
        data, _, _ = webp_thumbnail(path, SIDE)
    except Exception:  # noqa: BLE001 - an unreadable image leaves its pair out of the form
        return None
    return "data:image/webp;base64," + base64.b64encode(data).decode("ascii")


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def human_files(folder: ResultFolder, out_dir: Path, max_pairs: int = MAX_PAIRS, seed: int = 0) -> dict[Path, bytes]:
    """index.html and pairs.json of the form for ``folder``'s pairs."""
    from sdeval.reports.html import environment

    rng = random.Random(seed)
    by_arm: dict[str, list[dict[str, str]]] = {}
    for p in folder.pairs:
        by_arm.setdefault(p.get("arm", ""), []).append(p)
    per_arm = max(1, max_pairs // max(1, len(by_arm)))
    items, key = [], []
    for arm, pairs in by_arm.items():
        pairs = list(pairs)
        rng.shuffle(pairs)
        for p in pairs[:per_arm]:
            base = p.get("baseline", "")
            ai, bi = _int(p.get("arm_row")), _int(p.get("baseline_row"))
            arm_rows, base_rows = folder.arm_rows.get(arm, []), folder.arm_rows.get(base, [])
            if ai is None or bi is None or not (0 <= ai < len(arm_rows)) or not (0 <= bi < len(base_rows)):
                continue
            a_row, b_row = arm_rows[ai], base_rows[bi]
            a_img, b_img = _image(str(a_row.get("path"))), _image(str(b_row.get("path")))
            if a_img is None or b_img is None:
                continue
            flip = rng.random() < 0.5
            left, right = (arm, base) if flip else (base, arm)
            pid = f"p{len(key) + 1:04d}"
            key.append({"id": pid, "left": left, "right": right, "cluster": p.get("cluster"), "key": p.get("key"),
                        "left_path": str((a_row if flip else b_row).get("path")),
                        "right_path": str((b_row if flip else a_row).get("path"))})
            items.append({"id": pid, "left": a_img if flip else b_img, "right": b_img if flip else a_img,
                          "prompt": str(b_row.get("prompt") or "")})
    order = list(range(len(items)))
    rng.shuffle(order)
    items = [items[i] for i in order]
    page = environment().get_template("human.html.j2").render(
        title="Which image is better?", items=items, columns=list(VOTE_COLUMNS), filter_values=[],
        meta={"pairs": len(items), "storage": f"sdeval-votes:{folder.path.resolve()}"})
    pairs_json = {"schema_version": 1, "seed": seed, "pairs": key,
                  "note": "which arm is on each side of the form's pairs; keep it away from the raters"}
    return {out_dir / HUMAN_DIR / "index.html": page.encode("utf-8"),
            out_dir / HUMAN_DIR / PAIRS_FILE: (json.dumps(pairs_json, indent=1, ensure_ascii=False) + "\n").encode()}
