"""``sdeval eval`` / ``sdeval stats`` through click: exit codes, result folder, stored statistics, cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import torch  # noqa: F401
sys.path.insert(0, str(Path(__file__).parent))
from eval_models import save_inception_standin, write_images, restore_offline  # noqa: E402,F401

from sdeval.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evalcli")
    weights = save_inception_standin(root / "weights", seed=5)
    write_images(root / "gen", 10, seed=11)
    write_images(root / "ref", 9, seed=12)
    (root / "gen" / "notes.md").write_text("not an image")
    (root / "gen" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return {"root": root, "weights": weights, "gen": root / "gen", "ref": root / "ref"}


def run(data: dict[str, Path], *args: str) -> Any:
    model = ["--model-path", f"inception-2015-12-05={data['weights']}", "--workers", "2", "--batch-size", "4",
             "--device", "cpu"]
    return CliRunner().invoke(main, [*args, *model], catch_exceptions=False)


def test_eval_writes_result_folder_and_fail_if_exit_codes(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o"
    r = run(data, "eval", str(data["gen"]), "--ref", str(data["ref"]), "--out", str(out), "--fail-if", "fid > 1e9",
            "--fail-if", "kid>1e9")
    assert r.exit_code == 0, r.output
    assert {"results.jsonl", "results.csv", "summary.json"} <= {p.name for p in out.iterdir()}
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 11 and sum(1 for row in rows if row["error"]) == 1  # a bad file is a row, not a crash
    s = json.loads((out / "summary.json").read_text())
    assert s["command"] == "eval" and s["passed"] is True and s["images"] == 11 and s["errors"] == 1
    assert s["set_metrics"]["fid"]["n_generated"] == 10 and s["set_metrics"]["fid"]["n_reference"] == 9
    assert s["values"]["fid"] == s["set_metrics"]["fid"]["value"] > 0
    assert [c["fired"] for c in s["fail_if"]] == [False, False]
    assert s["reference"] == {"kind": "dir", "path": str(data["ref"]), "images": 9, "errors": 0,
                              "skipped_non_images": {}}
    assert s["inputs"]["skipped_non_images"] == {".md": 1}
    assert s["protocol"]["features"]["inception"]["mode"] == "clean"
    assert s["protocol"]["features"]["inception"]["optimized"]  # CPU default
    assert s["protocol"]["set_metrics"]["kid"]["subsets"] == 100
    assert any("could not be read" in w for w in s["warnings"])

    fid = s["values"]["fid"]
    r = run(data, "eval", str(data["gen"]), "--ref", str(data["ref"]), "--out", str(tmp_path / "o2"),
            "--fail-if", f"fid > {fid / 2}", "--json", "--exact-inception")
    assert r.exit_code == 1, r.output
    summary = json.loads(r.stdout)  # --json: stdout is only the summary
    assert summary["passed"] is False and summary["failures"][0].startswith("fid ")
    assert summary["protocol"]["features"]["inception"]["optimized"] is False
    assert summary["values"]["fid"] == pytest.approx(fid, rel=1e-4)


@pytest.mark.parametrize("args, fragment", [
    (["eval", "{gen}"], "give --ref DIR or --ref-stats NAME"),
    (["eval", "{gen}", "--ref", "{ref}", "--ref-stats", "x"], "not both"),
    (["eval", "{gen}", "--ref", "{ref}", "--fail-if", "cmmd > 1"], "not evaluated in this run"),
    (["eval", "{gen}", "--ref", "{ref}", "--fail-if", "fid >> 1"], "cannot parse rule"),
    (["eval", "{gen}", "--ref", "{ref}", "--metrics", "fidd"], "did you mean 'fid'"),
    (["eval", "{gen}", "--ref-stats", "nope"], "no reference statistics named 'nope'"),
    (["eval", "{gen}", "--ref-stats", "cleanfid:ffhq/1024", "--offline"], "cleanfid:DATASET/RES/SPLIT"),
    (["stats", "build", "{ref}", "--name", "bad name!"], "must be letters"),
    (["stats", "build", "{ref}", "--name", "x", "--metrics", "clip_score"], "does not compare against"),
])
def test_usage_errors_exit_2(data: dict[str, Path], args: list[str], fragment: str) -> None:
    r = run(data, *[a.format(gen=data["gen"], ref=data["ref"]) for a in args])
    assert r.exit_code == 2, r.output
    assert fragment in r.output


def test_missing_weights_offline_exit_2(data: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SDEVAL_MODEL_INCEPTION_2015_12_05", raising=False)
    r = CliRunner().invoke(main, ["eval", str(data["gen"]), "--ref", str(data["ref"]), "--offline"],
                           catch_exceptions=False)
    assert r.exit_code == 2, r.output
    assert "inception-2015-12-05" in r.output and "sdeval models fetch" in r.output


def test_stats_build_list_and_reuse_equal_ref_dir(data: dict[str, Path], tmp_path: Path) -> None:
    r = run(data, "stats", "build", str(data["ref"]), "--name", "refset")
    assert r.exit_code == 0, r.output
    assert "inception n=9 (stats, bank)" in r.output
    r = run(data, "stats", "build", str(data["ref"]), "--name", "refset")
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = CliRunner().invoke(main, ["stats", "list"])
    assert r.exit_code == 0 and "refset" in r.output and "inception(stats+bank)" in r.output

    r1 = run(data, "eval", str(data["gen"]), "--ref", str(data["ref"]), "--json", "--out", str(tmp_path / "a"))
    r2 = run(data, "eval", str(data["gen"]), "--ref-stats", "refset", "--json", "--out", str(tmp_path / "b"))
    assert r1.exit_code == 0 and r2.exit_code == 0, r2.output
    a, b = json.loads(r1.stdout), json.loads(r2.stdout)
    assert b["values"]["fid"] == pytest.approx(a["values"]["fid"], rel=1e-12)
    assert b["values"]["kid"] == a["values"]["kid"]  # same features, same order: same subsets
    assert b["reference"]["kind"] == "stats" and b["reference"]["name"] == "refset"
    assert b["reference"]["features"]["inception"]["identity"]["mode"] == "clean"


def test_protocol_mismatch_is_an_error(data: dict[str, Path], tmp_path: Path) -> None:
    assert run(data, "stats", "build", str(data["ref"]), "--name", "clean-only", "--metrics", "fid").exit_code == 0
    r = run(data, "eval", str(data["gen"]), "--ref-stats", "clean-only", "--mode", "legacy_tensorflow")
    assert r.exit_code == 2 and "different inception protocol" in r.output and "mode: reference 'clean'" in r.output
    other = save_inception_standin(tmp_path / "other", seed=99)
    r = CliRunner().invoke(main, ["eval", str(data["gen"]), "--ref-stats", "clean-only", "--model-path",
                                  f"inception-2015-12-05={other}", "--workers", "2"], catch_exceptions=False)
    assert r.exit_code == 2 and "weights_sha256" in r.output
    r = run(data, "eval", str(data["gen"]), "--ref-stats", "clean-only", "--metrics", "kid")
    assert r.exit_code == 2 and "KID/CMMD" in r.output  # FID-only statistics have no features for KID


def test_second_run_reads_features_from_cache(data: dict[str, Path], tmp_path: Path) -> None:
    from sdeval.evaluate.set_eval import eval_set
    from sdeval.pipeline.run import RunOptions

    opts = RunOptions(batch_size=4, workers=2, cache_path=str(tmp_path / "f.sqlite"),
                      metric_options={"model_paths": {"inception-2015-12-05": str(data["weights"])}, "device": "cpu"})
    cold = eval_set(str(data["gen"]), ref=str(data["ref"]), metrics=["fid", "kid"], options=opts, distributed=False)
    warm = eval_set(str(data["gen"]), ref=str(data["ref"]), metrics=["fid", "kid"], options=opts, distributed=False)
    assert cold.summary["features"]["inception"] == {"cache_hits": 0, "computed": 10}
    assert warm.summary["features"]["inception"] == {"cache_hits": 10, "computed": 0}
    assert warm.summary["reference_features"]["inception"] == {"cache_hits": 9, "computed": 0}
    assert warm.values == cold.values


def test_fid_only_keeps_no_feature_bank(data: dict[str, Path]) -> None:
    """Streaming: FID alone keeps float64 moments (constant in N), never the features."""
    from sdeval.evaluate.set_eval import feature_plan
    from sdeval.metrics import registry

    opts = {"model_paths": {"inception-2015-12-05": str(data["weights"])}, "device": "cpu"}
    plan = feature_plan([registry.create("fid", opts)], opts)
    fs = plan.sets()["inception"]
    rng = np.random.default_rng(0)
    for i in range(5):
        fs.add([f"p{i}-{j}" for j in range(7)], list(rng.normal(size=(7, 2048)).astype(np.float32)))
    assert fs.n == 35 and fs.state()["bank"] is None and fs.stats is not None and fs.stats.n == 35
    both = feature_plan([registry.create("fid", opts), registry.create("kid", opts)], opts).keeps
    assert both == {"inception": {"stats", "bank"}}


def test_eval_is_listed_and_help_does_not_import_torch() -> None:
    import subprocess

    code = ("import sys; from click.testing import CliRunner; from sdeval.cli import main; "
            "r = CliRunner().invoke(main, ['eval', '--help']); assert 'fail-if' in r.output; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    r = CliRunner().invoke(main, ["metrics"])
    for name in ("fid", "kid", "cmmd", "clip_fid", "lpips_ref", "lpips_diversity"):
        assert name in r.output


def test_cleanfid_published_names_and_offline() -> None:
    from sdeval.core.errors import ModelMissingError
    from sdeval.evaluate.reference_stats import cleanfid_url, load_cleanfid

    assert cleanfid_url("cleanfid:FFHQ/1024/trainval70k", "clean") == \
        "https://www.cs.cmu.edu/~clean-fid/stats/ffhq_clean_trainval70k_1024.npz"
    assert cleanfid_url("cleanfid:cifar10/32/train", "legacy_tensorflow", kid=True).endswith(
        "cifar10_legacy_tensorflow_train_32_kid.npz")
    with pytest.raises(ModelMissingError, match="offline"):
        load_cleanfid("cleanfid:cifar10/32/train", offline=True)


@pytest.mark.network
def test_cleanfid_published_statistics_download(data: dict[str, Path]) -> None:
    """clean-fid's published CIFAR-10 statistics by name (downloads ~32 MB; never run in CI)."""
    from sdeval.evaluate.set_eval import eval_set
    from sdeval.pipeline.run import RunOptions

    opts = RunOptions(batch_size=4, workers=2, metric_options={
        "model_paths": {"inception-2015-12-05": str(data["weights"])}, "device": "cpu"})
    result = eval_set(str(data["gen"]), ref_stats="cleanfid:cifar10/32/train", metrics="fid", options=opts,
                      distributed=False)
    assert result.values["fid"] > 0 and result.summary["reference"]["source"]["published_by"] == "clean-fid"
    assert any("weights hash" in w for w in result.warnings)
