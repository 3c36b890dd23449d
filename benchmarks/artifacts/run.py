"""Accuracy and speed of the artifact checks on the labelled set of ``build_set.py``.

    python benchmarks/artifacts/run.py                     # held-out half, shipped thresholds
    python benchmarks/artifacts/run.py --calibrate         # thresholds proposed from the calibration half
    python benchmarks/artifacts/run.py --markdown benchmarks/artifacts/RESULTS.md

Metrics run through sdeval's own registry and extractors (the code the gate runs), on PNGs
decoded with Pillow; checks are evaluated with the rules of ``sdeval.gates.checks`` exactly as
shipped. Per check it prints precision, recall per severity and per size, the false-positive
rate on clean images per size, and the confusion between defects and checks; then the
throughput of the extractor on 1024 px PNGs next to their decode time. Metric values are cached
in the data folder (``metrics-v<extractor version>.csv``) so re-scoring after a threshold change is instant.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))

import build_set  # noqa: E402
from ratios import record  # noqa: E402

from sdeval.gates.checks import CHECKS, FAMILIES  # noqa: E402
from sdeval.gates.rules import Rule  # noqa: E402
from sdeval.inputs.record import ImageRecord  # noqa: E402
from sdeval.metrics import registry  # noqa: E402
from sdeval.metrics.base import FeatureBatch, Missing  # noqa: E402

FAMILY = "artifacts"
SEVERITIES = build_set.SEVERITIES
#: conditions that are not defects of any check: reported in the confusion table only
APART = {"jpeg_history"}
#: content-free frames: any check firing on them is right, so they count for no check's precision
CONTENTLESS = {"black", "blank"}
#: which defects each rule is calibrated against (a check's other rules may catch them too)
RULE_TARGETS: dict[str, tuple[str, ...]] = {
    "blur": ("blur_gaussian",),
    "motion_blur": ("blur_motion",),
    "contrast": ("low_contrast",),
    "white_point": ("underexposed",),
    "clipped_highlights": ("overexposed",),
    "blown_highlights": ("overexposed",),
    "clipped_colour": ("oversaturated",),
    "noise": ("noise",),
    "latent_grid": ("latent_grid",),
    "seam": ("seam",),
    "tile_seam": ("seam",),
    "duplication": ("duplication",),
}
#: metrics whose thresholds are placed on a log scale (they span orders of magnitude)
LOG_SCALE = {"latent_grid", "noise", "clipped_colour", "clipped_highlights", "blown_highlights"}
#: signals the checks no longer threshold, measured too so that before/after can be compared
#: (``--before`` reports the checks as they were with them)
INFORMATIVE = ("clipped_highlights", "seam")


# -- measuring ---------------------------------------------------------------------------------
def checks() -> list[str]:
    return list(FAMILIES[FAMILY])


def metric_names() -> list[str]:
    return list(dict.fromkeys([r.metric for c in checks() for r in CHECKS[c].rules] + list(INFORMATIVE)))


class Scorer:
    """The family's metrics and their de-duplicated extractors, as the pipeline would build them."""

    def __init__(self) -> None:
        self.metrics = {name: registry.create(name) for name in metric_names()}
        self.extractors: dict[str, Any] = {}
        for metric in self.metrics.values():
            for ex in metric.feature_extractors():
                self.extractors.setdefault(ex.id, ex)
        for ex in self.extractors.values():
            ex.check_available()

    def score(self, path: Path) -> dict[str, Any]:
        data = path.read_bytes()
        t0 = time.perf_counter()
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            rgb = np.asarray(im.convert("RGB"))
        t1 = time.perf_counter()
        record = ImageRecord(path=str(path), format=fmt, width=rgb.shape[1], height=rgb.shape[0])
        features = {}
        for fid, ex in self.extractors.items():
            features[fid] = list(ex.compute([ex.prepare(rgb, record)]))
        t2 = time.perf_counter()
        batch = FeatureBatch(records=[record], features=features)
        row: dict[str, Any] = {"decode_ms": (t1 - t0) * 1e3, "extract_ms": (t2 - t1) * 1e3}
        for name, metric in self.metrics.items():
            value = metric.compute(batch)[0]
            row[name] = "" if isinstance(value, Missing) else repr(float(value))
        return row


def measure(data: Path, rows: list[dict[str, str]], workers: int, recompute: bool) -> dict[str, dict[str, Any]]:
    """Metric values per image path, from the cache where it is complete."""
    from sdeval.features.artifacts import ArtifactSignals

    cache = data / f"metrics-v{ArtifactSignals.version}.csv"  # a new extractor version rescoring
    names = metric_names()
    cached: dict[str, dict[str, Any]] = {}
    if cache.exists() and not recompute:
        with open(cache, newline="") as fh:
            for r in csv.DictReader(fh):
                if all(n in r for n in names):
                    cached[r["path"]] = r
    todo = [r["path"] for r in rows if r["path"] not in cached]
    if todo:
        scorer = Scorer()
        print(f"scoring {len(todo)} images ...", file=sys.stderr)
        with ThreadPoolExecutor(workers) as pool:
            for path, res in zip(todo, pool.map(lambda p: scorer.score(data / p), todo)):
                cached[path] = {"path": path, **res}
        fields = ["path", "decode_ms", "extract_ms", *names]
        tmp = cache.with_suffix(".tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            for r in cached.values():
                writer.writerow(r)
        tmp.replace(cache)
    return cached


def value(row: dict[str, Any], metric: str) -> float | None:
    v = row.get(metric, "")
    return None if v in ("", None) else float(v)


def fires(rule: Rule, row: dict[str, Any]) -> bool:
    v = value(row, rule.metric)
    if v is None:
        return rule.on_missing == "fire"
    return rule.fires(v)


#: the rules as shipped before issue 11 (calibrated on photos only), for ``--before``: where they
#: differ from the current ones (raw clipped highlights, lattice-only seams, photo thresholds)
BEFORE: dict[str, tuple[tuple[str, str, float], ...]] = {
    "exposure": (("white_point", "<", 0.57), ("clipped_highlights", ">", 0.075)),
    "oversaturation": (("clipped_colour", ">", 0.08),),
    "latent_grid": (("latent_grid", ">", 19.0), ("seam", ">", 0.49)),
    "blur": (("blur", ">", 1.05), ("motion_blur", ">", 0.27)),
    "duplication": (("duplication", ">", 0.72),),
}
#: the rules each check is evaluated with (``CHECKS`` unless ``--before``)
ACTIVE: dict[str, tuple[Rule, ...]] = {}


def rules_of(check: str) -> tuple[Rule, ...]:
    return ACTIVE.get(check) or CHECKS[check].rules


def use_before() -> None:
    """Evaluate with the rules of :data:`BEFORE` (for the before/after comparison)."""
    for check, specs in BEFORE.items():
        action = CHECKS[check].rules[0].action
        ACTIVE[check] = tuple(Rule(metric=m, op=op, threshold=t, action=action,
                                   on_missing="ignore" if check == "latent_grid" else "fire")
                              for m, op, t in specs)


def check_fires(check: str, row: dict[str, Any]) -> bool:
    return any(fires(rule, row) for rule in rules_of(check))


# -- reporting ---------------------------------------------------------------------------------
def _pct(num: int, den: int) -> str:
    return "–" if den == 0 else f"{100.0 * num / den:.0f}%"


def _frac(num: int, den: int) -> str:
    return "–" if den == 0 else f"{num / den:.2f}"


def group_of(row: dict[str, Any]) -> str:
    """The column an image is reported in: its short side for photos, ``real`` for real outputs."""
    return "real" if row.get("source") == "real" else str(row["size"])


def report(items: list[dict[str, Any]], sizes: Iterable[int | str]) -> dict[str, Any]:
    """Per check: clean FP rate per size (and on real outputs), recall per severity and size,
    precision; confusion."""
    sizes = [str(s) for s in sizes]
    out: dict[str, Any] = {"checks": {}, "confusion": {}}
    for check in checks():
        clean = [r for r in items if r["defect"] == "clean"]
        fp = {s: (sum(check_fires(check, r) for r in clean if group_of(r) == s),
                  sum(1 for r in clean if group_of(r) == s)) for s in sizes}
        fp_all = (sum(v[0] for v in fp.values()), sum(v[1] for v in fp.values()))
        target = [r for r in items if r["check"] == check]
        recall = {sev: (sum(check_fires(check, r) for r in target if r["severity"] == sev),
                        sum(1 for r in target if r["severity"] == sev)) for sev in SEVERITIES}
        modsev_size = {}
        for s in sizes:
            sel = [r for r in target if r["severity"] in ("moderate", "severe") and group_of(r) == s]
            modsev_size[s] = (sum(check_fires(check, r) for r in sel), len(sel))
        pool = [r for r in items if r["defect"] not in APART and
                (check == "blank" or r["defect"] not in CONTENTLESS)]
        fired = [r for r in pool if check_fires(check, r)]
        precision = (sum(1 for r in fired if r["check"] == check), len(fired))
        out["checks"][check] = {"fp": fp, "fp_all": fp_all, "recall": recall,
                                "modsev_size": modsev_size, "precision": precision}
    out["by_defect"] = {}
    for d in build_set.DEFECTS:
        if not d.check:
            continue
        sel = [r for r in items if r["defect"] == d.name]
        if sel:
            out["by_defect"][d.name] = {"check": d.check, **{
                sev: (sum(check_fires(d.check, r) for r in sel if r["severity"] == sev),
                      sum(1 for r in sel if r["severity"] == sev)) for sev in SEVERITIES}}
    clean = [r for r in items if r["defect"] == "clean"]
    family = [c for c in checks()]
    out["family_fp"] = {s: (sum(any(check_fires(c, r) for c in family) for r in clean if group_of(r) == s),
                            sum(1 for r in clean if group_of(r) == s)) for s in sizes}
    for defect in ["clean"] + [d.name for d in build_set.DEFECTS]:
        sel = [r for r in items if r["defect"] == defect and (defect == "clean" or r["severity"] != "mild")]
        if sel:
            out["confusion"][defect] = {c: (sum(check_fires(c, r) for r in sel), len(sel)) for c in checks()}
    return out


def thresholds_text() -> list[str]:
    lines = []
    for check in checks():
        rules = " or ".join(f"`{r.metric} {r.op} {r.threshold:g}`" for r in rules_of(check))
        lines.append(f"| {check} | {rules} | {rules_of(check)[0].action} |")
    return lines


def _col(s: str) -> str:
    return "real outputs" if s == "real" else f"@{s}"


def format_report(rep: dict[str, Any], sizes: list[str], split: str, n_items: int) -> list[str]:
    L = [f"Split: **{split}** ({n_items} images). Moderate+severe recall is the goal's number "
         f"(>= 0.9); FP = checks firing on clean images (goal <= 2% per check, <= 5% for the family "
         f"on good real outputs). Columns @512/@768/@1024 are crops of photos, 'real outputs' the "
         f"ComfyUI outputs (clean and damaged).", ""]
    head = ("| check | precision | recall mild | recall moderate | recall severe | "
            + " | ".join(f"mod+sev recall {_col(s)}" for s in sizes) + " | FP clean | "
            + " | ".join(f"FP {_col(s)}" for s in sizes) + " |")
    L.append(head)
    L.append("|" + "---|" * (head.count("|") - 1))
    for check, c in rep["checks"].items():
        cells = [check, _frac(*c["precision"])]
        cells += [_frac(*c["recall"][s]) for s in SEVERITIES]
        cells += [_frac(*c["modsev_size"][s]) for s in sizes]
        cells.append(_pct(*c["fp_all"]))
        cells += [_pct(*c["fp"][s]) for s in sizes]
        L.append("| " + " | ".join(cells) + " |")
    fam = rep["family_fp"]
    L.append("| **any check** | | | | | " + " | ".join("" for _ in sizes) + " | "
             + _pct(sum(v[0] for v in fam.values()), sum(v[1] for v in fam.values())) + " | "
             + " | ".join(_pct(*fam[s]) for s in sizes) + " |")
    L += ["", "Recall by defect (the share its own check catches):", "",
          "| defect | check | mild | moderate | severe |", "|---|---|---|---|---|"]
    for defect, row in rep["by_defect"].items():
        L.append(f"| {defect} | {row['check']} | " + " | ".join(_frac(*row[s]) for s in SEVERITIES) + " |")
    L += ["", "Confusion: share of images (moderate and severe; all clean ones) on which each check fires.", ""]
    cs = checks()
    L.append("| defect | " + " | ".join(cs) + " |")
    L.append("|" + "---|" * (len(cs) + 1))
    for defect, row in rep["confusion"].items():
        L.append(f"| {defect} | " + " | ".join(_pct(*row[c]) for c in cs) + " |")
    return L


def record_goals(rep: dict[str, Any], split: str) -> None:
    """The goal's two numbers for benchmarks/run_all.py: the weakest check's moderate+severe recall
    and the highest false-positive rate on clean images."""
    recalls, fps = [], []
    for check, c in rep["checks"].items():
        hit = sum(c["recall"][s][0] for s in ("moderate", "severe"))
        total = sum(c["recall"][s][1] for s in ("moderate", "severe"))
        if total:
            recalls.append((hit / total, check))
        if c["fp_all"][1]:
            fps.append((c["fp_all"][0] / c["fp_all"][1], check))
    def which(pairs: list[tuple[float, str]], value: float) -> str:
        at = [check for v, check in pairs if v == value]
        return at[0] if len(at) == 1 else f"{len(at)} checks"

    if recalls:
        value = min(v for v, _ in recalls)
        record(f"artifact checks ({split}): moderate+severe recall, weakest check ({which(recalls, value)})",
               value, ">= 0.9")
    if fps:
        value = max(v for v, _ in fps)
        record(f"artifact checks ({split}): false positives on clean images, highest ({which(fps, value)})",
               value, "<= 0.02")


def fp_breakdown(items: list[dict[str, Any]]) -> list[str]:
    """Which clean photos each check fires on (where the false positives come from)."""
    L = []
    for check in checks():
        hits = defaultdict(int)
        for r in items:
            if r["defect"] == "clean" and check_fires(check, r):
                hits[r["photo"]] += 1
        if hits:
            L.append(f"- {check}: " + ", ".join(f"{p} ({n})" for p, n in sorted(hits.items())))
    return L or ["- none"]


# -- calibration -------------------------------------------------------------------------------
def calibrate(items: list[dict[str, Any]]) -> list[str]:
    """A threshold per rule from the calibration half: between the most extreme clean value and
    the 10th percentile of the moderate+severe cases of the rule's defects (the midpoint, on a
    log scale where marked); where they overlap, at the clean extreme (no clean image fires)."""
    L = ["| check | metric | op | clean extreme | defect p10 | proposed | shipped |", "|---|---|---|---|---|---|---|"]
    for check in checks():
        for rule in rules_of(check):
            if rule.metric not in RULE_TARGETS:
                continue
            clean = [v for r in items if r["defect"] == "clean" and (v := value(r, rule.metric)) is not None]
            bad = [v for r in items if r["defect"] in RULE_TARGETS[rule.metric]
                   and r["severity"] in ("moderate", "severe") and (v := value(r, rule.metric)) is not None]
            if not clean or not bad:
                continue
            high = rule.op in (">", ">=")
            c = max(clean) if high else min(clean)
            d = float(np.percentile(bad, 10 if high else 90))
            gap = d > c if high else d < c
            if gap:
                if rule.metric in LOG_SCALE and c > 0 and d > 0:
                    t = math.sqrt(c * d)
                else:
                    t = (c + d) / 2
            else:
                t = c
            L.append(f"| {check} | {rule.metric} | {rule.op} | {c:.4g} | {d:.4g} | "
                     f"{t:.3g}{'' if gap else ' (overlap)'} | {rule.threshold:g} |")
    return L


# -- throughput --------------------------------------------------------------------------------
def throughput(data: Path, rows: list[dict[str, str]], n: int) -> list[str]:
    """Decode vs artifact analysis on 1024 px PNGs, one thread, then decode+analysis in a pool."""
    from sdeval.features.artifacts import ArtifactSignals

    paths = [data / r["path"] for r in rows if r["size"] == "1024" and r["defect"] == "clean"
             and group_of(r) != "real"][:n]
    if not paths:
        return ["(no 1024 px images)"]
    blobs = [p.read_bytes() for p in paths]
    ex = ArtifactSignals()
    rec = ImageRecord(path="x", format="PNG")

    def decode(b: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(b)) as im:
            return np.asarray(im.convert("RGB"))

    decode(blobs[0]), ex.prepare(decode(blobs[0]), rec)  # warm up
    dec, ana = [], []
    for b in blobs:
        t0 = time.perf_counter()
        img = decode(b)
        t1 = time.perf_counter()
        ex.prepare(img, rec)
        t2 = time.perf_counter()
        dec.append((t1 - t0) * 1e3)
        ana.append((t2 - t1) * 1e3)
    workers = os.cpu_count() or 1
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda b: ex.prepare(decode(b), rec), blobs))
    wall = time.perf_counter() - t0
    md, ma = statistics.median(dec), statistics.median(ana)
    record("artifact analysis / PNG decode, median time per 1024 px image", ma / md)
    shape = decode(blobs[0]).shape
    return [
        f"{len(blobs)} clean PNGs of {shape[1]}x{shape[0]}-ish px (short side 1024), Pillow decode, "
        f"OpenCV {__import__('cv2').__version__}, {workers} CPU cores:",
        "",
        "| | median ms/image (1 thread) |",
        "|---|---|",
        f"| PNG decode | {md:.1f} |",
        f"| artifact analysis (all signals) | {ma:.1f} |",
        f"| analysis / decode | {ma / md:.0%} |",
        "",
        f"Decode + analysis in a {workers}-thread pool: {len(blobs) / wall:.1f} images/s "
        f"(one thread, sequential: {1000.0 / (md + ma):.1f} images/s).",
    ]


BEGIN = "<!-- generated by benchmarks/artifacts/run.py: begin -->"
END = "<!-- generated by benchmarks/artifacts/run.py: end -->"


def write_block(path: Path, text: str) -> None:
    """Write ``text`` between the markers of ``path``, keeping what is written around them."""
    block = f"{BEGIN}\n{text}\n{END}"
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = (old + "\n" if old else "") + block + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new)
    tmp.replace(path)


# -- main --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(".sdeval-cache/artifacts-bench"))
    parser.add_argument("--split", choices=("heldout", "calibration", "all"), default="heldout")
    parser.add_argument("--calibrate", action="store_true", help="propose thresholds from the calibration half")
    parser.add_argument("--recompute", action="store_true", help="ignore cached metric values")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--throughput", type=int, default=40, help="1024 px images to time (0: skip)")
    parser.add_argument("--markdown", type=Path, help="also write the report as Markdown here")
    parser.add_argument("--photos", type=int, help="when building the set: only the first N photos of each half")
    parser.add_argument("--real", type=Path, help="when building the set: folder of real outputs to add")
    parser.add_argument("--no-real", action="store_true", help="when building the set: photos only")
    parser.add_argument("--before", action="store_true",
                        help="evaluate with the rules shipped before issue 11 (photo-calibrated)")
    args = parser.parse_args(argv)

    if args.before:
        use_before()
    labels = args.data / "labels.csv"
    if not labels.exists():
        print(f"building the set in {args.data} ...", file=sys.stderr)
        build_set.build(args.data, args.workers, args.photos, args.real, not args.no_real)
    with open(labels, newline="") as fh:
        rows = list(csv.DictReader(fh))
    values = measure(args.data, rows, args.workers, args.recompute)
    items = [{**r, **values[r["path"]]} for r in rows]
    sizes: list[str] = [str(s) for s in sorted({int(r["size"]) for r in rows if group_of(r) != "real"})]
    if any(group_of(r) == "real" for r in rows):
        sizes.append("real")

    out: list[str] = []
    if args.calibrate:
        cal = [r for r in items if r["split"] == "calibration"]
        out += ["## Thresholds proposed from the calibration half", ""] + calibrate(cal) + [""]
    chosen = items if args.split == "all" else [r for r in items if r["split"] == args.split]
    photos = sorted({r["photo"] for r in chosen if group_of(r) != "real"})
    n_real = len({r["photo"] for r in chosen if group_of(r) == "real"})
    out += ["## Accuracy at the " + ("thresholds shipped before issue 11" if args.before else "shipped thresholds"), "",
            f"Photos: {', '.join(photos)}; real outputs: {n_real}.", "", "| check | fires when | action |", "|---|---|---|"]
    out += thresholds_text() + [""]
    rep = report(chosen, sizes)
    out += format_report(rep, sizes, args.split, len(chosen))
    record_goals(rep, args.split)
    out += ["", "False positives on clean images, by photo (count of its 15 clean images; a real "
            "output is one image):", ""]
    out += fp_breakdown(chosen)
    if args.throughput:
        out += ["", "## Throughput", ""] + throughput(args.data, rows, args.throughput)
    text = "\n".join(out)
    print(text)
    if args.markdown:
        write_block(args.markdown, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
