"""The regeneration loop end to end against the in-process fake ComfyUI (and a tiny fake A1111).

Policies use offline checks only (blank frames, pixel statistics), so no weights are needed. The
fake's generator decides per submitted graph whether the image fails: black frames for even seeds,
for prompts without emphasis, for graphs without a face-restoration node...
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, PngImagePlugin

from sdeval import api
from sdeval.cli import main
from sdeval.gates.mutations import seed_candidates
from sdeval.gates.regenerate import RegenerateSettings, regenerate

try:
    from comfy_fake import NODE_SPECS, FakeComfyUI, NodeSpec, add_comfy_metadata, png_text_chunks, sd_graph
except ImportError:  # run from somewhere that does not put tests/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from comfy_fake import NODE_SPECS, FakeComfyUI, NodeSpec, add_comfy_metadata, png_text_chunks, sd_graph

BLANK = 'checks = ["blank"]\n'


# ------------------------------------------------------------------------------------------ helpers

def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def black() -> bytes:
    return png(np.zeros((64, 64, 3)))


def noisy(seed: int) -> bytes:
    """A plausible picture: std around 20, max well above 8."""
    rng = np.random.default_rng(seed % 2 ** 63)
    return png(np.clip(rng.integers(60, 200, size=3) + rng.integers(-40, 41, size=(64, 64, 3)), 0, 255))


def loud(seed: int = 0) -> bytes:
    """Uniform noise: luma pixel_std near 49, blocked by the quarantine tests' policy."""
    return png(np.random.default_rng(seed).integers(0, 256, size=(64, 64, 3)))


def ksampler_seed(graph: dict[str, Any]) -> int:
    return int(next(n["inputs"]["seed"] for n in graph.values() if n["class_type"] == "KSampler"))


def texts(graph: dict[str, Any]) -> list[str]:
    return [n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode"]


def by_parity(graph: dict[str, Any]) -> bytes:
    """Black for even seeds, a good image for odd ones."""
    seed = ksampler_seed(graph)
    return black() if seed % 2 == 0 else noisy(seed)


def comfy_image(path: Path, graph: dict[str, Any], pixels: bytes | None = None) -> Path:
    path.write_bytes(add_comfy_metadata(pixels if pixels is not None else black(), graph))
    return path


def expected_attempts(path: Path, seed: int, limit: int = 50) -> list[int]:
    """The seeds the loop will try for ``path`` until the first odd one (by_parity passes it)."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    out = []
    for s in seed_candidates(seed, salt=sha):
        if s == seed:
            continue
        out.append(s)
        if s % 2 or len(out) >= limit:
            return out
    raise AssertionError("unreachable")


def failing_image(folder: Path, name: str, attempts: int) -> tuple[Path, list[int]]:
    """A black ComfyUI image with an even seed that by_parity accepts on exactly ``attempts`` tries."""
    for variant in range(200):
        graph = sd_graph(2 * variant + 2, f"a red fox, variant {variant}")
        path = comfy_image(folder / name, graph)
        seeds = expected_attempts(path, ksampler_seed(graph))
        if len(seeds) == attempts:
            return path, seeds
    raise AssertionError("no variant found")


def policy_file(tmp_path: Path, text: str = BLANK) -> str:
    p = tmp_path / "gates.toml"
    p.write_text(text)
    return str(p)


def gate(*args: str):
    return CliRunner().invoke(main, ["gate", *args], catch_exceptions=False)


def rows_of(out: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {Path((r["regenerated_from"] or r)["path"]).name: r for r in rows}


def state_events(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "regeneration" / "state.jsonl").read_text().splitlines()]


def submitted_seeds(fake: FakeComfyUI) -> list[int]:
    return [ksampler_seed(g) for _, g in fake.submitted]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    d = tmp_path / "outputs"
    d.mkdir()
    return d


# ------------------------------------------------------------------------------------------ the loop

def test_reseed_until_pass_with_lineage_in_results(tmp_path: Path, inputs: Path):
    good = comfy_image(inputs / "good.png", sd_graph(7, "a cat"), noisy(7))
    one, seeds_one = failing_image(inputs, "one.png", attempts=1)
    three, seeds_three = failing_image(inputs, "three.png", attempts=3)
    originals = {p: p.read_bytes() for p in (good, one, three)}
    out = tmp_path / "res"
    with FakeComfyUI(generator=by_parity) as fake:
        r = gate(str(inputs), "--policy", policy_file(tmp_path), "--out", str(out), "--regenerate", "comfyui",
                 "--comfy-url", fake.url, "--max-attempts", "3")
        assert r.exit_code == 0, r.output
        # never the same seed twice, never an original seed, never a cache hit
        seeds = submitted_seeds(fake)
        assert sorted(seeds) == sorted(seeds_one + seeds_three) and len(set(seeds)) == len(seeds)
        assert all(s % 2 == 1 for s in seeds_one[-1:] + seeds_three[-1:])
        assert all(g["9"]["inputs"]["filename_prefix"].startswith("sdeval/regen/") for _, g in fake.submitted)
    assert all(p.read_bytes() == b for p, b in originals.items())  # originals untouched
    rows = rows_of(out)
    assert rows["good.png"]["verdict"] == "pass" and rows["good.png"]["regeneration"] is None
    row = rows["three.png"]
    lineage = row["regeneration"]
    assert row["verdict"] == "pass" and lineage["status"] == "accepted" and lineage["accepted_attempt"] == 3
    assert [a["seed"] for a in lineage["attempts"]] == seeds_three
    assert [a["verdict"] for a in lineage["attempts"]] == ["reseed", "reseed", "pass"]
    assert all(a["mutation"] == "reseed" and a["seconds"] >= 0 and not a["cache_hit"] for a in lineage["attempts"])
    assert lineage["attempts"][0]["scores"]["pixel_max"] == 0 and lineage["attempts"][0]["prompt_id"]
    # the row describes the accepted image, and points back at the original
    assert Path(row["path"]).parent == out / "attempts" / Path(row["path"]).parent.name
    assert row["seed"] == seeds_three[-1] and row["pixel_std"] > 2
    assert row["sha256"] == hashlib.sha256(Path(row["path"]).read_bytes()).hexdigest()
    assert row["regenerated_from"]["path"] == str(three) and row["regenerated_from"]["verdict"] == "reseed"
    assert json.loads(png_text_chunks(Path(row["path"]).read_bytes())["prompt"])["3"]["inputs"]["seed"] == row["seed"]
    summary = json.loads((out / "summary.json").read_text())
    regen = summary["regeneration"]
    assert regen["images"] == 2 and regen["accepted"] == 2 and regen["acceptance_rate"] == 1.0
    assert regen["attempts"] == 4 and regen["attempts_per_accepted"] == 2.0 and regen["server_version"] == "0.3.64"
    assert summary["protocol"]["generator"]["server_version"] == "0.3.64"
    assert summary["passed"] and summary["counts"]["pass"] == 3
    events = state_events(out)
    assert events[0]["event"] == "run" and sum(e["event"] == "attempt" for e in events) == 4
    csv_header = (out / "results.csv").read_text().splitlines()[0]
    assert "regenerated_from" in csv_header and "regeneration" in csv_header


def test_images_sharing_a_graph_get_distinct_seeds_and_no_cache_hits(tmp_path: Path, inputs: Path):
    """Two images of one batch carry the same graph and seed: their lineages must not ask for the
    same seeds (ComfyUI would answer the second from its cache, with no new image)."""
    graph = sd_graph(4, "a batch")
    comfy_image(inputs / "a.png", graph)
    comfy_image(inputs / "b.png", graph, png(np.full((64, 64, 3), 3)))
    out = tmp_path / "res"
    with FakeComfyUI(generator=lambda g: black()) as fake:
        r = gate(str(inputs), "--policy", policy_file(tmp_path), "--out", str(out), "--regenerate", "comfyui",
                 "--comfy-url", fake.url, "--max-attempts", "3")
        seeds = submitted_seeds(fake)
        cached = [m for h in fake.history.values() for kind, m in h["status"]["messages"]
                  if kind == "execution_cached" and "3" in m["nodes"]]
    assert r.exit_code == 1 and len(seeds) == 6 and len(set(seeds)) == 6 and 4 not in seeds
    assert cached == []  # the sampler ran every time
    attempts = [a for row in rows_of(out).values() for a in row["regeneration"]["attempts"]]
    assert len(attempts) == 6 and not any(a["cache_hit"] for a in attempts)


def test_unresolved_after_max_attempts_exits_1(tmp_path: Path, inputs: Path):
    comfy_image(inputs / "a.png", sd_graph(4, "a dog"))
    out = tmp_path / "res"
    with FakeComfyUI(generator=lambda g: black()) as fake:
        r = gate(str(inputs), "--policy", policy_file(tmp_path), "--out", str(out), "--regenerate", "comfyui",
                 "--comfy-url", fake.url, "--max-attempts", "2", "--min-pass-rate", "0")
        assert len(fake.submitted) == 2
    assert r.exit_code == 1, r.output
    row = rows_of(out)["a.png"]
    assert row["verdict"] == "reseed" and row["regeneration"]["status"] == "exhausted"
    assert len(row["regeneration"]["attempts"]) == 2 and row["regenerated_from"]["path"].endswith("a.png")
    summary = json.loads((out / "summary.json").read_text())
    assert "1 image(s) still unresolved after regeneration" in summary["verdict"]["reasons"]
    assert summary["regeneration"]["acceptance_rate"] == 0.0


def test_reprompt_uses_the_policy_strategy_and_a_new_seed(tmp_path: Path, inputs: Path):
    comfy_image(inputs / "a.png", sd_graph(5, "a red fox"))
    policy = policy_file(tmp_path, 'rules = ["pixel_max < 8 -> reprompt"]\n')
    out = tmp_path / "res"

    def emphasis_wins(graph: dict[str, Any]) -> bytes:
        return noisy(1) if any(t.endswith(":1.2)") for t in texts(graph)) else black()

    with FakeComfyUI(generator=emphasis_wins) as fake:
        r = gate(str(inputs), "--policy", policy, "--out", str(out), "--regenerate", "comfyui",
                 "--comfy-url", fake.url)
        assert r.exit_code == 0, r.output
        (_, graph), = fake.submitted
    assert texts(graph) == ["(a red fox:1.2)", "blurry"] and ksampler_seed(graph) != 5
    row = rows_of(out)["a.png"]
    (attempt,) = row["regeneration"]["attempts"]
    assert attempt["mutation"] == "reprompt" and attempt["prompt"] == "(a red fox:1.2)"
    assert row["prompt"] == "a red fox"  # scored against what the image should show


def test_restore_face_needs_configuration(tmp_path: Path, inputs: Path):
    comfy_image(inputs / "a.png", sd_graph(5, "a portrait"))
    policy = policy_file(tmp_path, 'rules = ["pixel_max < 8 -> restore_face"]\n')
    out = tmp_path / "res"
    with FakeComfyUI() as fake:
        r = gate(str(inputs), "--policy", policy, "--out", str(out), "--regenerate", "comfyui",
                 "--comfy-url", fake.url)
        assert fake.submitted == []
    assert r.exit_code == 1
    lineage = rows_of(out)["a.png"]["regeneration"]
    assert lineage["status"] == "unresolvable" and "restore_face_workflow" in lineage["reason"]


def test_restore_face_inserts_the_policy_nodes_on_the_same_seed(tmp_path: Path, inputs: Path):
    comfy_image(inputs / "a.png", sd_graph(5, "a portrait"))
    policy = policy_file(tmp_path, 'rules = ["pixel_max < 8 -> restore_face"]\n'
                                   '[regenerate.restore_face_nodes.1]\nclass_type = "FaceRestoreWithModel"\n'
                                   'inputs = {image = "$image", fidelity = 0.5}\n')
    specs = {**NODE_SPECS, "FaceRestoreWithModel": NodeSpec(
        {"image": ("IMAGE",), "fidelity": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0})}, ("IMAGE",))}

    def faces_fixed(graph: dict[str, Any]) -> bytes:
        return noisy(3) if any(n["class_type"] == "FaceRestoreWithModel" for n in graph.values()) else black()

    out = tmp_path / "res"
    with FakeComfyUI(generator=faces_fixed, node_specs=specs) as fake:
        r = gate(str(inputs), "--policy", policy, "--out", str(out), "--regenerate", "comfyui",
                 "--comfy-url", fake.url)
        assert r.exit_code == 0, r.output
        (_, graph), = fake.submitted
    assert ksampler_seed(graph) == 5  # the same picture, with its face restored
    assert graph["9"]["inputs"]["images"] == ["sdeval_face_1", 0]
    assert graph["sdeval_face_1"]["inputs"]["image"] == ["8", 0]
    (attempt,) = rows_of(out)["a.png"]["regeneration"]["attempts"]
    assert attempt["mutation"] == "restore_face" and attempt["restore_face"] and attempt["verdict"] == "pass"


# ------------------------------------------------------------------------------------------ block

QUARANTINE_POLICY = 'rules = ["pixel_max < 8 -> reseed", "pixel_std > 40 -> block"]\n'


def test_block_quarantines_with_audit_log_and_is_never_regenerated(tmp_path: Path, inputs: Path):
    bad = comfy_image(inputs / "bad.png", sd_graph(3, "loud"), loud())
    comfy_image(inputs / "dark.png", sd_graph(4, "dark"))
    comfy_image(inputs / "good.png", sd_graph(5, "fine"), noisy(5))
    qdir, out = tmp_path / "q", tmp_path / "res"

    def gen(graph: dict[str, Any]) -> bytes:  # regenerations of "dark" come back blocked too
        return loud(ksampler_seed(graph) % 1000)

    with FakeComfyUI(generator=gen) as fake:
        r = gate(str(inputs), "--policy", policy_file(tmp_path, QUARANTINE_POLICY), "--out", str(out),
                 "--regenerate", "comfyui", "--comfy-url", fake.url, "--quarantine", str(qdir))
        assert [texts(g)[0] for _, g in fake.submitted] == ["dark"]  # blocked images are not resubmitted
    assert r.exit_code == 1
    assert bad.exists() and (qdir / "bad.png").read_bytes() == bad.read_bytes()
    audit = [json.loads(line) for line in (qdir / "audit.jsonl").read_text().splitlines()]
    assert len(audit) == 2
    first = next(a for a in audit if a["image"] == str(bad))
    assert first["sha256"] == hashlib.sha256(bad.read_bytes()).hexdigest() and not first["moved"]
    assert first["verdict"] == "block" and "pixel_std" in first["reasons"][0] and first["scores"]["pixel_std"] > 40
    assert first["time"].endswith("+00:00")
    rows = rows_of(out)
    assert rows["bad.png"]["verdict"] == "block" and rows["bad.png"]["quarantine"]["path"] == str(qdir / "bad.png")
    dark = rows["dark.png"]  # its first regeneration was blocked: quarantined, lineage stops
    assert dark["verdict"] == "block" and dark["regeneration"]["status"] == "blocked"
    assert len(dark["regeneration"]["attempts"]) == 1
    assert next(a for a in audit if a["image"] != str(bad))["source"] == str(inputs / "dark.png")


def test_quarantine_move_without_regeneration(tmp_path: Path, inputs: Path):
    bad = comfy_image(inputs / "bad.png", sd_graph(3, "loud"), loud())
    data = bad.read_bytes()
    qdir = tmp_path / "q"
    r = gate(str(inputs), "--policy", policy_file(tmp_path, QUARANTINE_POLICY), "--out", str(tmp_path / "res"),
             "--quarantine", str(qdir), "--quarantine-move")
    assert r.exit_code == 1
    assert not bad.exists() and (qdir / "bad.png").read_bytes() == data
    (line,) = (qdir / "audit.jsonl").read_text().splitlines()
    assert json.loads(line)["moved"] is True


# ------------------------------------------------------------------------------------------ resume

def test_interrupted_run_resumes_without_redoing_finished_attempts(tmp_path: Path, inputs: Path):
    a, seeds_a = failing_image(inputs, "a.png", attempts=3)
    b, seeds_b = failing_image(inputs, "b.png", attempts=2)
    policy, out = policy_file(tmp_path), tmp_path / "res"
    with FakeComfyUI(generator=by_parity, node_delay=0.03) as fake:
        pol = api.load_policy(policy)
        first = api.gate([str(inputs)], pol, out_dir=out)
        settings = RegenerateSettings(url=fake.url, concurrency=2)

        def ctrl_c(record: Any) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            regenerate(first, settings, on_attempt=ctrl_c)
        fake.wait_idle()
        assert fake.queue_ids() == ([], [])
        # the prompt still in flight was cancelled: deleted from the queue or interrupted
        assert any(r["path"].endswith(("/interrupt", "/queue")) and r["method"] == "POST" for r in fake.requests)
        done = [e for e in state_events(out) if e["event"] == "attempt"]
        assert len(done) == 1
        rows = rows_of(out)  # the folder is consistent: every row, lineage marked interrupted
        assert {r["regeneration"]["status"] for r in rows.values()} == {"interrupted"}
        before = len(fake.submitted)

        r = gate(str(inputs), "--policy", policy, "--out", str(out), "--regenerate", "comfyui",
                 "--comfy-url", fake.url)
        assert r.exit_code == 0, r.output
        seeds = submitted_seeds(fake)
        assert seeds.count(done[0]["seed"]) == 1  # the finished attempt was not redone
        assert len(seeds) - before == len(seeds_a) + len(seeds_b) - 1
    rows = rows_of(out)
    assert [x["seed"] for x in rows["a.png"]["regeneration"]["attempts"]] == seeds_a
    assert [x["seed"] for x in rows["b.png"]["regeneration"]["attempts"]] == seeds_b
    summary = json.loads((out / "summary.json").read_text())["regeneration"]
    assert summary["resumed_attempts"] == 1 and summary["accepted"] == 2


def test_attempt_lost_before_its_state_line_is_redone_from_the_server_cache(tmp_path: Path, inputs: Path):
    a, seeds = failing_image(inputs, "a.png", attempts=2)
    policy, out = policy_file(tmp_path), tmp_path / "res"
    args = [str(inputs), "--policy", policy, "--out", str(out), "--regenerate", "comfyui"]
    with FakeComfyUI(generator=by_parity) as fake:
        assert gate(*args, "--comfy-url", fake.url).exit_code == 0
        state = out / "regeneration" / "state.jsonl"
        lines = state.read_text().splitlines()
        state.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # a crash cut the last line short
        r = gate(*args, "--comfy-url", fake.url)
        assert r.exit_code == 0, r.output
        assert submitted_seeds(fake) == seeds + seeds[-1:]
    (_, second) = rows_of(out)["a.png"]["regeneration"]["attempts"]
    assert second["cache_hit"] and second["verdict"] == "pass" and second["seed"] == seeds[-1]


def test_state_from_another_policy_is_refused(tmp_path: Path, inputs: Path):
    failing_image(inputs, "a.png", attempts=1)
    out = tmp_path / "res"
    with FakeComfyUI(generator=by_parity) as fake:
        assert gate(str(inputs), "--policy", policy_file(tmp_path), "--out", str(out), "--regenerate", "comfyui",
                    "--comfy-url", fake.url).exit_code == 0
        r = CliRunner().invoke(main, ["gate", str(inputs), "--policy", policy_file(tmp_path), "--out", str(out),
                                      "--rule", "pixel_std < 1", "--regenerate", "comfyui", "--comfy-url", fake.url])
    assert r.exit_code == 2 and "different policy" in r.output


# ------------------------------------------------------------------------------------------ what is submitted

def test_dry_run_prints_graphs_and_submits_nothing(tmp_path: Path, inputs: Path):
    a = comfy_image(inputs / "a.png", sd_graph(6, "a boat"))
    comfy_image(inputs / "bad.png", sd_graph(3, "loud"), loud())
    out = tmp_path / "res"
    with socket.socket() as s:  # a port nobody listens on: nothing may be contacted
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = gate(str(inputs), "--policy", policy_file(tmp_path, QUARANTINE_POLICY), "--out", str(out),
             "--regenerate", "comfyui", "--comfy-url", f"http://127.0.0.1:{port}", "--dry-run")
    assert r.exit_code == 1
    (plan,) = json.loads(r.stdout)
    sha = hashlib.sha256(a.read_bytes()).hexdigest()
    assert plan["image"] == str(a) and plan["attempt"] == 1 and plan["mutation"] == "reseed"
    assert plan["seed"] == ksampler_seed(plan["payload"]) == next(seed_candidates(6, salt=sha))
    assert plan["payload"]["9"]["inputs"]["filename_prefix"].startswith("sdeval/regen/a-")
    assert plan["payload"]["6"]["inputs"]["text"] == "a boat"
    assert "would be quarantined" in r.stderr
    assert not out.exists() and not (inputs / "quarantine").exists()


def test_workflow_for_an_a1111_image(tmp_path: Path, inputs: Path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a lighthouse at dusk\nNegative prompt: fog\nSteps: 20, Sampler: Euler a, "
                                "CFG scale: 7, Seed: 1234, Size: 64x64, Model: sd15")
    img = inputs / "a1111.png"
    Image.new("RGB", (64, 64)).save(img, pnginfo=info)
    wf = tmp_path / "workflow_api.json"
    wf.write_text(json.dumps(sd_graph(0, "PLACEHOLDER")))
    out = tmp_path / "res"
    with FakeComfyUI(generator=lambda g: noisy(ksampler_seed(g))) as fake:
        r = gate(str(inputs), "--policy", policy_file(tmp_path), "--out", str(out), "--regenerate", "comfyui",
                 "--comfy-url", fake.url, "--workflow", str(wf))
        assert r.exit_code == 0, r.output
        (_, graph), = fake.submitted
    sha = hashlib.sha256(img.read_bytes()).hexdigest()
    assert texts(graph) == ["a lighthouse at dusk", "blurry"]
    assert ksampler_seed(graph) == next(seed_candidates(1234, salt=sha))
    row = rows_of(out)["a1111.png"]
    assert row["verdict"] == "pass" and row["regeneration"]["source"] == f"workflow {wf}"
    assert row["regeneration"]["original_seed"] == 1234


def test_images_that_cannot_be_regenerated_say_why(tmp_path: Path, inputs: Path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a lighthouse\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64")
    Image.new("RGB", (64, 64)).save(inputs / "a1111.png", pnginfo=info)
    comfy_image(inputs / "loaded.png", {
        "1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}})
    out = tmp_path / "res"
    with FakeComfyUI() as fake:
        r = gate(str(inputs), "--policy", policy_file(tmp_path), "--out", str(out), "--regenerate", "comfyui",
                 "--comfy-url", fake.url)
        assert fake.submitted == []
    assert r.exit_code == 1
    rows = rows_of(out)
    assert {r["regeneration"]["status"] for r in rows.values()} == {"not_regenerable"}
    assert "--workflow" in rows["a1111.png"]["regeneration"]["reason"]
    assert "no seed input" in rows["loaded.png"]["regeneration"]["reason"]
    assert rows["a1111.png"]["verdict"] == "reseed" and rows["a1111.png"]["regenerated_from"] is None
    # a real run says why too, not only --dry-run
    assert f"{inputs / 'a1111.png'}: not regenerated (not_regenerable): " in r.output
    assert f"{inputs / 'loaded.png'}: not regenerated (not_regenerable): " in r.output


def test_queue_wait_and_execution_are_timed_apart(tmp_path: Path, inputs: Path):
    """Two prompts in flight: the second waits for the first. Its submission-to-result time holds
    that wait; ComfyUI's execution_start / execution_success timestamps give the run alone."""
    failing_image(inputs, "a.png", attempts=1)
    failing_image(inputs, "b.png", attempts=1)
    out = tmp_path / "res"
    with FakeComfyUI(generator=by_parity, node_delay=0.1) as fake:  # per node that is not cached
        r = gate(str(inputs), "--policy", policy_file(tmp_path), "--out", str(out), "--regenerate", "comfyui",
                 "--comfy-url", fake.url, "--concurrency", "2")
        assert r.exit_code == 0, r.output
    attempts = [a for row in rows_of(out).values() for a in row["regeneration"]["attempts"]]
    assert len(attempts) == 2
    for a in attempts:
        assert a["execution_seconds"] >= 0.09
        assert abs(a["queue_seconds"] + a["execution_seconds"] - a["seconds"]) < 0.01
    run = min(a["execution_seconds"] for a in attempts)
    assert max(a["queue_seconds"] for a in attempts) >= 0.8 * run  # the one that waited for the other
    regen = json.loads((out / "summary.json").read_text())["regeneration"]
    assert regen["execution_seconds"] == pytest.approx(sum(a["execution_seconds"] for a in attempts), abs=0.01)
    assert regen["queue_seconds"] == pytest.approx(sum(a["queue_seconds"] for a in attempts), abs=0.01)
    # the server ran one prompt at a time: execution fits in the wall time, the per-attempt sum does not
    assert regen["execution_seconds"] <= regen["wall_seconds"] < regen["generation_seconds"] + 1
    assert regen["generation_seconds"] > regen["execution_seconds"] + 0.8 * run
    assert f"{regen['wall_seconds']:.1f} s wall (server: {regen['execution_seconds']:.1f} s executing" in r.output


def test_a1111_time_is_all_execution(tmp_path: Path, inputs: Path):
    from sdeval.generators.a1111 import A1111Backend

    with FakeA1111(lambda body: noisy(body["seed"])) as fake:
        backend = A1111Backend(fake.url)
        try:
            outcome = backend.next_completed([backend.submit({"prompt": "x", "seed": 1})], 10)
        finally:
            backend.close()
    assert outcome is not None and outcome.ok
    assert outcome.queue_seconds == 0.0 and outcome.execution_seconds == outcome.seconds > 0


def test_server_stopped_mid_run_reports_the_folder_and_how_to_resume(tmp_path: Path, inputs: Path):
    failing_image(inputs, "a.png", attempts=3)
    out = tmp_path / "res"
    calls: list[int] = []
    fake = FakeComfyUI().start()

    def gen(graph: dict[str, Any]) -> bytes:
        calls.append(1)
        if len(calls) == 2:  # the server goes away while the second attempt runs
            threading.Thread(target=fake.stop, daemon=True).start()
        return by_parity(graph)

    fake.generator = gen
    try:
        r = CliRunner().invoke(main, ["gate", str(inputs), "--policy", policy_file(tmp_path), "--out", str(out),
                                      "--regenerate", "comfyui", "--comfy-url", fake.url, "--concurrency", "1"])
    finally:
        fake.stop()
    assert r.exit_code == 2, r.output  # the connection error's exit code
    assert "error: cannot reach ComfyUI" in r.output
    assert f"{inputs / 'a.png'}: not regenerated (aborted) after " in r.output
    assert "verdicts" in r.output and f"results: {out}/results.jsonl" in r.output
    assert "rerun the same command to resume" in r.output
    assert rows_of(out)["a.png"]["regeneration"]["status"] == "aborted"


def test_rejected_graph_stops_the_lineage(tmp_path: Path, inputs: Path):
    g = sd_graph(4, "a dog")
    g["3"]["inputs"]["steps"] = 0  # the server refuses it: value_smaller_than_min
    comfy_image(inputs / "a.png", g)
    out = tmp_path / "res"
    with FakeComfyUI() as fake:
        r = gate(str(inputs), "--policy", policy_file(tmp_path), "--out", str(out), "--regenerate", "comfyui",
                 "--comfy-url", fake.url, "--max-attempts", "3")
    assert r.exit_code == 1
    lineage = rows_of(out)["a.png"]["regeneration"]
    assert lineage["status"] == "not_regenerable" and len(lineage["attempts"]) == 1
    assert "node 3 (KSampler), input 'steps'" in lineage["reason"]


def test_server_down_aborts_with_a_consistent_folder(tmp_path: Path, inputs: Path):
    from sdeval.generators.comfyui.errors import ComfyUIConnectionError

    failing_image(inputs, "a.png", attempts=1)
    out = tmp_path / "res"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first = api.gate([str(inputs)], api.load_policy(policy_file(tmp_path)), out_dir=out)
    settings = RegenerateSettings(url=f"http://127.0.0.1:{port}", client_options={"retries": 0})
    with pytest.raises(ComfyUIConnectionError, match="cannot reach ComfyUI"):
        regenerate(first, settings)
    lineage = rows_of(out)["a.png"]["regeneration"]
    assert lineage["status"] == "aborted" and "cannot reach" in lineage["reason"]


@pytest.mark.parametrize("args, fragment", [
    (["--dry-run"], "only make sense with --regenerate"),
    (["--regenerate", "a1111", "--workflow", "{wf}"], "cannot be used with --regenerate a1111"),
    (["--regenerate", "comfyui", "--a1111-url", "http://x"], "does not apply"),
    (["--quarantine-move"], "needs --quarantine"),
    (["--regenerate", "comfyui", "--comfy-url", "not-a-url"], "--comfy-url: 'not-a-url' is not an http(s) URL"),
    (["--regenerate", "a1111", "--a1111-url", "ftp://host"], "--a1111-url: 'ftp://host' is not an http(s) URL"),
])
def test_usage_errors(tmp_path: Path, inputs: Path, args: list[str], fragment: str):
    comfy_image(inputs / "a.png", sd_graph(4, "a dog"))
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(sd_graph(1)))
    r = CliRunner().invoke(main, ["gate", str(inputs), "--policy", policy_file(tmp_path), "--out",
                                  str(tmp_path / "res"), *[a.replace("{wf}", str(wf)) for a in args]])
    assert r.exit_code == 2 and fragment in r.output


@pytest.mark.parametrize("flag, backend", [("--comfy-url", "comfyui"), ("--a1111-url", "a1111")])
def test_a_bad_server_url_stops_before_anything_is_evaluated_or_sent(tmp_path: Path, inputs: Path, flag: str,
                                                                     backend: str):
    comfy_image(inputs / "a.png", sd_graph(4, "a dog"))
    out = tmp_path / "res"
    r = CliRunner().invoke(main, ["gate", str(inputs), "--policy", policy_file(tmp_path), "--out", str(out),
                                  "--regenerate", backend, flag, "not-a-url"])
    assert r.exit_code == 2 and f"{flag}: 'not-a-url' is not an http(s) URL with a host" in r.output
    assert not out.exists()  # no evaluation ran, so nothing can have been sent either


# ------------------------------------------------------------------------------------------ AUTOMATIC1111

class FakeA1111:
    """``/sdapi/v1/txt2img`` answering like the web UI's API: base64 PNGs plus an ``info`` JSON string."""

    def __init__(self, generator: Callable[[dict[str, Any]], bytes]) -> None:
        self.generator = generator
        self.bodies: list[dict[str, Any]] = []
        #: what the next txt2img requests get instead of images: an HTTP status, or "drop" (no answer)
        self.plan: list[int | str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/internal/sysinfo":
                    self._send(200, {"Version": "v1.10.1"})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/sdapi/v1/txt2img":
                    self._send(200, {})
                    return
                fake.bodies.append(body)
                if fake.plan:
                    what = fake.plan.pop(0)
                    if what == "drop":
                        self.close_connection = True
                        return
                    self._send(int(what), {"error": "busy"})
                    return
                infotext = (f"{body['prompt']}\nNegative prompt: {body.get('negative_prompt', '')}\nSteps: "
                            f"{body.get('steps', 20)}, CFG scale: {body.get('cfg_scale', 7)}, Seed: {body['seed']}, "
                            f"Size: {body.get('width', 512)}x{body.get('height', 512)}")
                self._send(200, {"images": [base64.b64encode(fake.generator(body)).decode()], "parameters": body,
                                 "info": json.dumps({"infotexts": [infotext], "seed": body["seed"]})})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeA1111:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a1111_backend(tmp_path: Path, inputs: Path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a lighthouse at dusk\nNegative prompt: fog\nSteps: 20, Sampler: Euler a, "
                                "CFG scale: 7, Seed: 1234, Size: 64x64, Model: sd15")
    img = inputs / "a.png"
    Image.new("RGB", (64, 64)).save(img, pnginfo=info)
    out = tmp_path / "res"

    def gen(body: dict[str, Any]) -> bytes:
        return black() if body["seed"] % 2 == 0 else noisy(body["seed"])

    with FakeA1111(gen) as fake:
        r = gate(str(inputs), "--policy", policy_file(tmp_path), "--out", str(out), "--regenerate", "a1111",
                 "--a1111-url", fake.url, "--max-attempts", "10")
        assert r.exit_code == 0, r.output
    first = fake.bodies[0]
    assert {k: first[k] for k in ("prompt", "negative_prompt", "steps", "cfg_scale", "sampler_name", "width")} == {
        "prompt": "a lighthouse at dusk", "negative_prompt": "fog", "steps": 20, "cfg_scale": 7.0,
        "sampler_name": "Euler a", "width": 64}
    seeds = [b["seed"] for b in fake.bodies]
    assert len(set(seeds)) == len(seeds) and 1234 not in seeds and all(0 <= s < 2 ** 32 for s in seeds)
    assert seeds[-1] % 2 == 1 and all(s % 2 == 0 for s in seeds[:-1])
    row = rows_of(out)["a.png"]
    assert row["verdict"] == "pass" and row["seed"] == seeds[-1]  # the infotext travels with the file
    summary = json.loads((out / "summary.json").read_text())
    assert summary["regeneration"]["server_version"] == "v1.10.1"


def test_a1111_retries_a_5xx_but_never_resends_txt2img_after_a_dropped_connection():
    from sdeval.core.http import RetryPolicy
    from sdeval.generators.a1111 import A1111Backend

    sleeps: list[float] = []
    with FakeA1111(lambda body: noisy(body["seed"])) as fake:
        backend = A1111Backend(fake.url, policy=RetryPolicy(retries=2, backoff=0.25), sleep=sleeps.append)
        try:
            fake.plan = [503]
            outcome = backend.next_completed([backend.submit({"prompt": "x", "seed": 1})], 10)
            assert outcome is not None and outcome.ok and len(fake.bodies) == 2 and sleeps == [0.25]
            fake.plan = ["drop"]
            outcome = backend.next_completed([backend.submit({"prompt": "x", "seed": 3})], 10)
            assert outcome is not None and not outcome.ok and "1 attempt over" in (outcome.error or "")
            assert len(fake.bodies) == 3  # it may have run: the attempt is spent, not sent twice
        finally:
            backend.close()


def test_a1111_down_is_a_clear_error(tmp_path: Path, inputs: Path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a lighthouse\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64")
    Image.new("RGB", (64, 64)).save(inputs / "a.png", pnginfo=info)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = CliRunner().invoke(main, ["gate", str(inputs), "--policy", policy_file(tmp_path), "--out",
                                  str(tmp_path / "res"), "--regenerate", "a1111", "--a1111-url",
                                  f"http://127.0.0.1:{port}"])
    assert r.exit_code == 2 and "cannot reach AUTOMATIC1111" in r.output
    assert rows_of(tmp_path / "res")["a.png"]["regeneration"]["status"] == "aborted"
