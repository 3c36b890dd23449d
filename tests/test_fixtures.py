"""Every checked-in fixture: its expected prompt, seed, source, size and verdict under the demo policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sdeval
from sdeval.pipeline.run import RunOptions

from shared_paths import FIXTURES

EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
FILES = EXPECTED["files"]
IMAGES = {k: v for k, v in FILES.items() if v["kind"] == "image"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = sdeval.gate(str(FIXTURES / "outputs"), str(FIXTURES / "demo-policy.toml"),
                         options=RunOptions(batch_size=8), out_dir=out)
    rows = {Path(r["path"]).relative_to(FIXTURES / "outputs").as_posix(): r for r in result.rows}
    return result, rows


def test_every_image_has_a_row_and_non_images_are_skipped(demo):
    result, rows = demo
    assert set(rows) == set(IMAGES)
    skipped = [k for k, v in FILES.items() if v["kind"] == "skipped" and not k.endswith(".txt")]
    assert sum(result.summary["inputs"]["skipped_non_images"].values()) == len(skipped)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_fixture(demo, name):
    _, rows = demo
    row, want = rows[name], IMAGES[name]
    assert row["verdict"] == want["verdict"], (row["reasons"], want.get("description"))
    if want["verdict"] == "error":
        assert want["error_contains"] in row["error"]
        return
    assert row["source"].split("+")[0] == want["source"]
    assert row["prompt"] == want["prompt"]
    assert row["seed"] == want["seed"]
    assert row["negative_prompt"] == want.get("negative_prompt")
    assert (row["width"], row["height"]) == (want["actual_width"], want["actual_height"])
    if want.get("width"):
        assert (row["requested_width"], row["requested_height"]) == (want["width"], want["height"])


def test_duplicate_reported(demo):
    result, rows = demo
    dup = [k for k, v in IMAGES.items() if v.get("duplicate_of")]
    assert dup and all(rows[k]["duplicate_of"].endswith(IMAGES[k]["duplicate_of"]) for k in dup)
    assert len(result.summary["inputs"]["duplicates"]) == len(dup)


def test_counts_and_batch_verdict(demo):
    result, _ = demo
    for verdict in ("pass", "reseed", "block", "error"):
        assert result.summary["counts"][verdict] == EXPECTED["counts"][verdict]
    assert result.passed is False


def test_manifest_overrides_embedded_metadata(tmp_path):
    for manifest in ("manifest.csv", "manifest.jsonl"):
        result = sdeval.gate(str(FIXTURES / manifest), str(FIXTURES / "demo-policy.toml"))
        rows = {Path(r["path"]).resolve(): r for r in result.rows}
        for want in EXPECTED["manifest_rows"]:
            row = rows[(FIXTURES / want["path"]).resolve()]
            assert row["prompt"] == want["prompt"] and row["seed"] == want["seed"]
            assert row["source"] == want["source"] and row["group"] == want["group"]
            assert row["verdict"] == want["verdict"]
