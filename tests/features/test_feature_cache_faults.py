"""The feature cache never fails a run: one warning, and the run goes on without it (issue 10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from sdeval import api
from sdeval.cli import main
from sdeval.pipeline.run import RunOptions


def test_a_cache_that_cannot_be_opened_is_one_warning(tmp_path: Path, photo_dir: Path):
    (tmp_path / "afile").write_text("x")  # the cache's folder is a file (as a read-only mount, for root too)
    opts = RunOptions(workers=2, cache_path=str(tmp_path / "afile" / "features.sqlite"))
    pol = api.load_policy("offline", {"checks": ["artifacts"]})
    result = api.gate([str(photo_dir)], pol, options=opts)
    assert len(result.rows) == 5 and all(r["error"] is None for r in result.rows)
    problems = result.summary["cache_problems"]
    assert len(problems) == 1 and "goes on without the cache" in problems[0]


def test_cli_prints_the_cache_warning_once(tmp_path: Path, photo_dir: Path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("SDEVAL_CACHE_DIR", str(tmp_path / "afile"))
    r = CliRunner().invoke(main, ["gate", str(photo_dir), "--policy", "offline", "--out", str(tmp_path / "o")])
    assert r.exit_code in (0, 1), r.output
    assert " ".join(r.output.split()).count("goes on without the cache") == 1


_FULL = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from sdeval import api
from sdeval.pipeline.run import RunOptions
resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))  # the disk 'fills up' at 40 kB a file
pol = api.load_policy("offline", {"checks": ["artifacts"]})
result = api.gate([sys.argv[1]], pol, options=RunOptions(workers=1, batch_size=1, cache_path=sys.argv[2]))
print(len(result.rows), sum(r["error"] is not None for r in result.rows))
for p in result.summary["cache_problems"]:
    print(p)
"""


def test_a_full_disk_under_the_cache_is_one_warning_with_the_real_error(tmp_path: Path):
    d = tmp_path / "in"
    d.mkdir()
    import numpy as np
    from PIL import Image

    for i in range(40):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(d / f"{i}.png")
    r = subprocess.run([sys.executable, "-c", _FULL, str(d), str(tmp_path / "c" / "features.sqlite")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "40 0"
    assert len(lines) == 2, lines  # one warning, not one per batch
    assert "no transaction is active" not in lines[1] and "write failed" in lines[1]
