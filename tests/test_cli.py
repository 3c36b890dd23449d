"""Exit codes, --json and start-up cost, through click's CliRunner and once as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdeval.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_pass_exit_0(photo_dir: Path, tmp_path: Path):
    out = tmp_path / "res"
    r = run("gate", str(photo_dir / "astronaut.png"), str(photo_dir / "coffee.png"), "--policy", "offline",
            "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "PASSED" in r.output
    assert {p.name for p in out.iterdir()} == {"results.jsonl", "results.csv", "summary.json", ".sdeval-results",
                                               "report.html", "junit.xml", "summary.md"}


def test_gate_failed_exit_1_and_result_folder(photo_dir: Path, tmp_path: Path):
    out = tmp_path / "res"
    r = run("gate", str(photo_dir), "--check", "blank", "--check", "resolution", "--out", str(out),
            "--policy", str(_empty_policy(tmp_path)))
    assert r.exit_code == 1, r.output
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    verdicts = {Path(r["path"]).name: r["verdict"] for r in rows}
    assert verdicts == {"astronaut.png": "pass", "black.png": "reseed", "chelsea.png": "pass",
                        "coffee.png": "pass", "odd_size.png": "block"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["reseed"] == 1 and summary["inputs"]["skipped_non_images"] == {".md": 1}
    assert summary["policy"]["rules"][0]["metric"] == "pixel_std"
    assert summary["protocol"]["versions"]["sdeval"]


def _empty_policy(tmp_path: Path) -> Path:
    p = tmp_path / "empty.toml"
    p.write_text("min_pass_rate = 1.0\n")
    return p


def test_json_stdout_is_only_json(photo_dir: Path, tmp_path: Path):
    r = CliRunner().invoke(main, ["gate", str(photo_dir / "black.png"), "--check", "blank", "--json",
                                  "--policy", str(_empty_policy(tmp_path)), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1
    summary = json.loads(r.stdout)
    assert summary["counts"]["reseed"] == 1 and summary["passed"] is False


@pytest.mark.parametrize("args, fragment", [
    (["gate", "/nonexistent/dir"], "no such file or directory"),
    (["gate", "{photos}", "--policy", "nope"], "no policy file or preset named 'nope'"),
    (["gate", "{photos}", "--rule", "pixel_sdt < 3"], "did you mean 'pixel_std'"),
    (["gate", "{photos}", "--check", "blnk"], "did you mean 'blank'"),
    (["gate", "{photos}", "--resolution", "huge"], "1024x1024"),
    (["gate", "{photos}", "--min-pass-rate", "3"], "not in the range"),
])
def test_usage_errors_exit_2(photo_dir: Path, args, fragment):
    args = [a.replace("{photos}", str(photo_dir)) for a in args]
    if "--policy" not in args:
        args += ["--policy", "offline"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert fragment in r.output


def test_missing_weights_offline_exit_2(photo_dir: Path, model_env: Path):
    r = CliRunner().invoke(main, ["gate", str(photo_dir), "--policy", "offline", "--min-clip", "0.2", "--offline"])
    assert r.exit_code == 2, r.output
    assert "clip-vit-l-14-openai" in r.output and "sdeval models fetch clip-vit-l-14-openai" in r.output


def test_planned_metric_exit_2(photo_dir: Path, monkeypatch):
    from sdeval.metrics import registry

    monkeypatch.setitem(registry._PLANNED, "wow_score", ("not in this build", "install sdeval-wow"))
    r = CliRunner().invoke(main, ["gate", str(photo_dir), "--policy", "offline", "--rule", "wow_score < 1"])
    assert r.exit_code == 2
    assert "wow_score" in r.output and "how to get it: install sdeval-wow" in r.output


def test_internal_error_exit_3(photo_dir: Path, monkeypatch, tmp_path: Path):
    import sdeval.api

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(sdeval.api, "gate", boom)
    r = CliRunner().invoke(main, ["gate", str(photo_dir), "--policy", "offline"])
    assert r.exit_code == 3 and "internal error: RuntimeError: kaboom" in r.output
    assert "Traceback" not in r.output


def test_allow_errors(tmp_path: Path, photo_dir: Path):
    (photo_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nxxxx")
    (photo_dir / "black.png").unlink()
    (photo_dir / "odd_size.png").unlink()
    args = ["gate", str(photo_dir), "--check", "blank", "--policy", str(_empty_policy(tmp_path)),
            "--out", str(tmp_path / "o")]
    assert CliRunner().invoke(main, args).exit_code == 1
    assert CliRunner().invoke(main, args + ["--allow-errors"]).exit_code == 0


def test_real_process_exit_codes_and_no_torch_on_help(photo_dir: Path, tmp_path: Path):
    exe = [sys.executable, "-m", "sdeval"]
    r = subprocess.run(exe + ["gate", str(photo_dir), "--check", "blank", "--out", str(tmp_path / "o"),
                              "--policy", str(_empty_policy(tmp_path))], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    r = subprocess.run(exe + ["gate", str(tmp_path / "nothing-here"), "--policy", "offline"], capture_output=True, text=True)
    assert r.returncode == 2 and "no such file" in r.stderr
    code = ("import sys; from sdeval.cli import main\n"
            "try:\n main(['gate', '--help'])\nexcept SystemExit: pass\n"
            "bad = [m for m in ('torch', 'onnxruntime', 'pandas', 'open_clip') if m in sys.modules]\n"
            "print('HEAVY', bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr
