"""Prompt and seed recovery on real ComfyUI outputs, before (a git ref, default ``main``) and after
(this checkout).

    PYTHONPATH=. python benchmarks/metadata_recovery.py                # ../shared/calibration/real-outputs
    PYTHONPATH=. python benchmarks/metadata_recovery.py DIR --before main
    PYTHONPATH=. python benchmarks/metadata_recovery.py --only-this    # no "before" run

Each file's expectation is in ``metadata_recovery_labels.json`` (written by an independent
mini-reader of the node classes these graphs use, then checked by eye against each graph):

- ``literal``: the graph holds the file's prompt as literal text (possibly built by
  concatenation) and determines it: sdeval must return exactly that prompt, negative and seed;
- ``ambiguous``: the graph saves several images with *different* literal prompts and the file
  does not record which saving node wrote it: the right answer is "prompt unknown" (any prompt
  given is unverifiable, so counted as wrong), the seed (shared by all samplers) must be found;
- per sampler: the literal prompt of each first-pass sampler of each graph (``sampler_prompts``),
  read from ``samplers`` of the record: it shows the text nodes are followed even where the file's
  own prompt is ambiguous;
- ``runtime``: the prompt is made at run time (``Text Random Line``, ``Load Text File``, tokens):
  the prompt must be unknown, with a warning naming the node; the seed must be found.

Prompts are compared with each line stripped (sdeval joins encoder texts one per line, stripped).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABELS = HERE / "metadata_recovery_labels.json"
#: ``../shared`` beside the checkout (a worktree one level deeper finds it too)
CANDIDATES = [up / "shared" / "calibration" / "real-outputs" for up in HERE.parents[1:3]]
DEFAULT_DIR = next((p for p in CANDIDATES if p.is_dir()), CANDIDATES[0])


def _norm(text: str | None) -> str | None:
    if text is None:
        return None
    return "\n".join(line.strip() for line in text.strip().split("\n") if line.strip())


def measure(folder: Path) -> dict:
    """Read every labelled file with the sdeval on the path; the counts per kind."""
    from PIL import Image

    from sdeval.inputs.metadata.reader import read_metadata

    labels = json.loads(LABELS.read_text(encoding="utf-8"))
    counts: dict[str, dict[str, int]] = {}
    wrong: list[str] = []
    per_sampler = {"samplers": 0, "prompt_ok": 0}
    sizes = {"files": 0, "known": 0, "equal": 0}
    for name, want in sorted(labels.items()):
        path = folder / name
        if not path.exists():
            continue
        with Image.open(path) as im:
            meta = read_metadata(im, str(path))
            image_size = im.size
        sizes["files"] += 1
        if meta.output_width and meta.output_height:
            sizes["known"] += 1
            sizes["equal"] += (meta.output_width, meta.output_height) == image_size
        c = counts.setdefault(want["kind"], {"files": 0, "prompt_ok": 0, "seed_ok": 0,
                                             "both_ok": 0, "wrong_prompt": 0, "warned": 0})
        c["files"] += 1
        read = {s.node_id: s.prompt for s in meta.samplers}
        for sid, text in want.get("sampler_prompts", {}).items():
            per_sampler["samplers"] += 1
            per_sampler["prompt_ok"] += _norm(read.get(sid)) == _norm(text)
        seed_ok = meta.seed == want["seed"]
        c["seed_ok"] += seed_ok
        if want["kind"] == "literal":
            ok = (_norm(meta.prompt) == _norm(want["prompt"])
                  and _norm(meta.negative_prompt) == _norm(want["negative_prompt"]))
            c["prompt_ok"] += ok
            c["both_ok"] += ok and seed_ok
            if meta.prompt is not None and not ok:
                c["wrong_prompt"] += 1
                wrong.append(name)
        else:
            c["prompt_ok"] += meta.prompt is None
            c["both_ok"] += meta.prompt is None and seed_ok
            if meta.prompt is not None:
                c["wrong_prompt"] += 1
                wrong.append(name)
            c["warned"] += any("prompt unknown" in w or "which one made this file" in w
                               for w in meta.warnings)
    return {"counts": counts, "wrong": wrong[:10], "per_sampler": per_sampler, "sizes": sizes}


def _run_ref(ref: str, folder: Path) -> dict | None:
    """The same measurement with the sdeval package of a git ref (extracted to a temp folder)."""
    try:
        data = subprocess.run(["git", "-C", str(HERE.parent), "archive", ref, "sdeval"],
                              check=True, capture_output=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"(no 'before' run: git archive {ref} failed: {exc})", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(data)) as tar:
            try:
                tar.extractall(tmp, filter="data")
            except TypeError:  # Python before 3.10.12/3.11.4: our own git archive, trusted
                tar.extractall(tmp)
        env = {**os.environ, "PYTHONPATH": tmp}
        out = subprocess.run([sys.executable, __file__, str(folder), "--only-this", "--json"],
                             env=env, capture_output=True, text=True, check=True, cwd=tmp)
    return json.loads(out.stdout)


def _report(title: str, result: dict) -> None:
    print(title)
    print(f"  {'kind':10} {'files':>5} {'prompt right':>13} {'seed right':>11} {'wrong prompt':>13}"
          f" {'unknown+warned':>15}")
    for kind in ("literal", "ambiguous", "runtime"):
        c = result["counts"].get(kind)
        if not c:
            continue
        c.setdefault("warned", 0)
        warned = "-" if kind == "literal" else str(c["warned"])
        print(f"  {kind:10} {c['files']:5d} {c['prompt_ok']:13d} {c['seed_ok']:11d}"
              f" {c['wrong_prompt']:13d} {warned:>15}")
    ps = result.get("per_sampler")
    if ps and ps["samplers"]:
        print(f"  first-pass samplers whose literal prompt is read (every sampler of every file): "
              f"{ps['prompt_ok']}/{ps['samplers']}")
    sz = result.get("sizes")
    if sz and sz["files"]:
        print(f"  expected output size (what size_error compares with) known on {sz['known']}/{sz['files']} "
              f"files, equal to the image's size on {sz['equal']}")
    if result["wrong"]:
        print("  wrong or unverifiable prompts, e.g.: " + ", ".join(result["wrong"][:3]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    ap.add_argument("--before", default="main", help="git ref measured as 'before' (default main)")
    ap.add_argument("--only-this", action="store_true", help="measure this checkout only")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    folder = Path(args.folder)
    if not folder.is_dir():
        sys.exit(f"no calibration folder at {folder} (see ../shared/calibration/README.md)")
    after = measure(folder)
    if args.json:
        print(json.dumps(after))
        return
    if not args.only_this:
        before = _run_ref(args.before, folder)
        if before is not None:
            _report(f"before ({args.before}):", before)
    _report("after (this checkout):", after)
    lit = after["counts"].get("literal", {"files": 0, "both_ok": 0})
    both = lit["both_ok"]
    if lit["files"]:
        share = both / lit["files"]
        print(f"prompt and seed recovered on {both}/{lit['files']} files whose graph holds the "
              f"prompt literally ({share:.0%}; goal >= 98%)")
        sys.path.insert(0, str(HERE))
        from ratios import record

        record("literal-prompt files with prompt and seed recovered / all such files", share, ">= 0.98")
        total = sum(c["files"] for c in after["counts"].values())
        record("files given a wrong or unverifiable prompt / all files",
               sum(c["wrong_prompt"] for c in after["counts"].values()) / max(1, total), "<= 0")


if __name__ == "__main__":
    main()
