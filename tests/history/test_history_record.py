"""What a run records from its summary: rates with intervals, regeneration and cost, compare deltas,
protocol segments; ``sdeval history add`` of an existing result folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hist_data import summary
from sdeval.cli import main
from sdeval.history.record import build_record, n_class, protocol_hash, protocol_key, summary_values, wilson


def test_gate_summary_rates_regeneration_and_cost() -> None:
    s = summary(50.0)
    s.update(command="gate", images=10,
             counts={"pass": 8, "reseed": 1, "reprompt": 0, "restore_face": 0, "block": 1, "error": 0},
             policy={"rules": [{"metric": "nsfw", "op": ">", "threshold": 0.3, "action": "block"}]},
             regeneration={"enabled": True, "dry_run": False, "accepted": 4, "acceptance_rate": 0.8,
                           "attempts_per_accepted": 1.5, "generation_seconds": 100.0, "execution_seconds": 72.0})
    rows = [{"path": f"{i}.png", "sha256": f"{i:064x}", "error": None, "pixel_std": 50.0 + i,
             "nsfw": 0.5 if i < 2 else 0.1, "width": 512, "height": 512} for i in range(10)]
    v = {x.name: x for x in summary_values(s, rows, gpu_cost_per_hour=3.6)}
    assert v["pass_rate"].value == 0.8 and (v["pass_rate"].lo, v["pass_rate"].hi) == pytest.approx(wilson(8, 10)[1:])
    assert v["nsfw_rate"].value == 0.2  # above the policy's 0.3, not open_nsfw's 0.5
    assert v["pixel_std"].value == 54.5 and v["pixel_std"].lo < 54.5 < v["pixel_std"].hi
    assert v["pixel_std.p50"].value == 54.5 and not v["pixel_std.p50"].watched
    assert v["regen.acceptance_rate"].watched and v["regen.seconds_per_accepted"].value == 18.0
    assert v["regen.cost_per_accepted"].value == pytest.approx(3.6 * 72 / 3600 / 4)
    rec = build_record(s, rows, label="g", images=True)
    assert len(rec.images) == 10 and rec.protocol["size_class"] == 512


def test_compare_summary_deltas_and_explicit_values() -> None:
    s = {"command": "compare", "started_at": "2026-01-01T00:00:00+00:00", "passed": False,
         "comparisons": [{"metric": "clip_score", "delta": -0.01, "ci": [-0.015, -0.005], "decision": "worse",
                          "test": "paired t", "higher_is_better": True},
                         {"metric": "fid", "arm": "lora-b", "delta": 3.0, "ci_low": 1.0, "ci_high": 5.0}],
         "history_values": [{"name": "win_rate", "value": 0.4, "higher_is_better": True}]}
    v = {x.name: x for x in summary_values(s)}
    assert (v["delta.clip_score"].value, v["delta.clip_score"].lo, v["delta.clip_score"].hi) == (-0.01, -0.015, -0.005)
    assert v["delta.lora-b.fid"].higher_is_better is False and v["delta.lora-b.fid"].watched  # from the registry
    assert v["win_rate"].watched
    assert build_record(s).details["decisions"][0] == {"metric": "clip_score", "decision": "worse", "test": "paired t"}


def test_protocol_segments() -> None:
    base = protocol_hash(protocol_key(summary(1.0), None))
    assert protocol_hash(protocol_key(summary(2.0, night=3), None)) == base  # values and time: same protocol
    assert protocol_hash(protocol_key(summary(1.0, version="2"), None)) != base  # a metric version
    s = summary(1.0)
    s["protocol"]["versions"]["torch"] = "9.9"  # package versions alone do not start a segment
    assert protocol_hash(protocol_key(s, None)) == base
    assert (n_class(1000), n_class(1024), n_class(2047)) == ("512-1023", "1024-2047", "1024-2047")
    assert protocol_hash(protocol_key(summary(1.0, fid=3.0, images=1000), None)) != \
        protocol_hash(protocol_key(summary(1.0, fid=3.0, images=5000), None))


def test_history_add_records_an_existing_result_folder(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(summary(50.0)), encoding="utf-8")
    db = str(tmp_path / "h.db")
    r = CliRunner().invoke(main, ["history", "add", str(folder), "--history", db, "--label", "old", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["run"]["label"] == "old" and out["alerts"] == [] and "no alerts until 3" in out["notes"][0]
    r = CliRunner().invoke(main, ["history", "add", str(tmp_path), "--history", db])
    assert r.exit_code == 2 and "not a result folder" in r.output
