"""Files no generator wrote: devices, FIFOs, huge files and broken EXIF are error rows, never a
crash or a hang (issue 10)."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sdeval import api
from sdeval.cli import main
from sdeval.inputs.decode import DecodeOptions
from sdeval.pipeline.run import RunOptions


def _good(d: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(d / "ok.png")


def _rows(d: Path, **kw) -> dict[str, dict]:
    result = api.gate([str(d)], "offline", options=RunOptions(workers=2, cache=False, **kw))
    return {Path(r["path"]).name: r for r in result.rows}


def test_symlink_to_dev_zero_and_a_fifo_are_error_rows(tmp_path: Path):
    d = tmp_path / "in"
    d.mkdir()
    _good(d)
    os.symlink("/dev/zero", d / "z.png")
    os.mkfifo(d / "y.png")
    done: dict = {}
    t = threading.Thread(target=lambda: done.update(rows=_rows(d)), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the run hung on a FIFO"
    rows = done["rows"]
    assert "not a regular file (a character device)" in rows["z.png"]["error"]
    assert "not a regular file (a FIFO)" in rows["y.png"]["error"]
    assert rows["ok.png"]["error"] is None


def test_a_file_over_the_size_limit_is_an_error_row(tmp_path: Path):
    d = tmp_path / "in"
    d.mkdir()
    _good(d)
    (d / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20000)
    rows = _rows(d, decode=DecodeOptions(max_file_bytes=16384))
    assert "over the limit of 16384" in rows["big.png"]["error"] and rows["ok.png"]["error"] is None
    r = CliRunner().invoke(main, ["gate", str(d), "--policy", "offline", "--max-file-bytes", "16384",
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "--max-file-bytes" in (tmp_path / "o" / "results.csv").read_text()


def test_every_decode_step_failure_is_an_error_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import sdeval.pipeline.decode_pool as pool

    d = tmp_path / "in"
    d.mkdir()
    _good(d)
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(d / "exif.jpg", "JPEG")

    def boom(im):  # what exif_transpose raised on orientation 8 with a malformed tag (seen in the field)
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(pool, "to_rgb", boom)
    pol = api.load_policy("offline", {"checks": ["artifacts"]})
    result = api.gate([str(d)], pol, options=RunOptions(workers=1, cache=False))
    rows = {Path(r["path"]).name: r for r in result.rows}
    assert rows["exif.jpg"]["error"] == "cannot decode: error: unpack requires a buffer of 4 bytes"
    assert rows["ok.png"]["verdict"] == "error"  # every image fails the same way, each as its own row


def test_pillow_warnings_become_row_warnings_not_stderr(tmp_path: Path, capfd):
    d = tmp_path / "in"
    d.mkdir()
    _good(d)
    # an EXIF entry whose data lies past the end of the block: Pillow warns "Tag data larger than file"
    path = d / "exif.jpg"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(path, "JPEG")
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x010F, 2, 4000, 900)
    exif = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    data = path.read_bytes()
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + data[2:])
    for _ in range(2):  # the same warning again on the second run: never swallowed as "already shown"
        rows = _rows(d)
        assert any("Tag data larger than file" in w for w in rows["exif.jpg"]["warnings"]), rows["exif.jpg"]
        assert not any("Tag data" in w for w in rows["ok.png"]["warnings"])
    assert "Tag data larger than file" not in capfd.readouterr().err
