"""fixtures/make_fixtures.py is deterministic and the checked-in fixtures are what it makes.

The script is run into a temporary folder and every file it writes is compared byte for byte with
the checked-in copy. Encoded bytes depend on the codec libraries (zlib, libjpeg, libwebp) bundled
with Pillow, so when this environment's versions differ from the ones recorded in
``fixtures/expected.json`` ("generated_with"), images are compared by their decoded content and
metadata instead, and expected.json without its byte-level fields.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
SCRIPT = FIXTURES / "make_fixtures.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("sdeval_make_fixtures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(root: Path, rel: str) -> bytes:
    # rel may hold surrogate escapes (the non-UTF-8 file name): go through bytes
    with open(os.path.join(os.fsencode(root), os.fsencode(rel)), "rb") as fh:
        return fh.read()


def _decoded(data: bytes):
    """(format, mode, size, pixels, text/exif metadata) or None when it does not decode."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            info = {k: v for k, v in im.info.items() if isinstance(v, str)}
            exif = im.getexif()
            meta = (info, dict(exif), dict(exif.get_ifd(0x8769)))
            return im.format, im.mode, im.size, np.asarray(im), meta
    except Exception:
        return None


def _strip_bytes_fields(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    doc.pop("generated_with", None)
    for entry in doc["files"].values():
        entry.pop("sha256", None)
        entry.pop("size_bytes", None)
    return doc


@pytest.fixture(scope="module")
def script():
    return _load_script()


@pytest.fixture(scope="module")
def built(script, tmp_path_factory):
    out = tmp_path_factory.mktemp("fixtures")
    assert script.main(["--out", str(out)]) == 0
    return out


def test_checked_in_expected_matches_checked_in_files(script):
    doc = json.loads((FIXTURES / "expected.json").read_text())
    on_disk = {p[len("outputs/"):] for p in script.generated_paths(FIXTURES) if p.startswith("outputs/")}
    assert on_disk == set(doc["files"]), "expected.json must describe every file under outputs/"
    for rel, entry in doc["files"].items():
        data = _read(FIXTURES / "outputs", rel)
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], rel
        assert len(data) == entry["size_bytes"], rel
    assert (FIXTURES / "demo-policy.toml").read_text() == script.DEMO_POLICY


def test_fixtures_are_small():
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024, total


def test_script_reproduces_checked_in_fixtures(script, built):
    paths = script.generated_paths(built)
    assert paths == script.generated_paths(FIXTURES)

    different = [rel for rel in paths if _read(built, rel) != _read(FIXTURES, rel)]
    if not different:
        return

    recorded = json.loads((FIXTURES / "expected.json").read_text())["generated_with"]
    if recorded == script._versions():
        pytest.fail(f"same library versions as recorded, yet these files differ: {different}")

    # other codec versions: the content must still be the same
    for rel in different:
        if rel == "expected.json":
            new = json.loads(_read(built, rel))
            old = json.loads(_read(FIXTURES, rel))
            assert _strip_bytes_fields(new) == _strip_bytes_fields(old)
            continue
        new, old = _decoded(_read(built, rel)), _decoded(_read(FIXTURES, rel))
        if old is None:  # bad files (truncated, bomb): bytes depend on zlib; only existence counts
            assert new is None, rel
            continue
        assert new is not None, rel
        assert new[:3] == old[:3], rel
        assert new[4] == old[4], rel
        if new[0] in ("PNG", "GIF"):
            assert np.array_equal(new[3], old[3]), rel
        else:  # lossy codecs may round differently
            diff = np.abs(new[3].astype(np.int16) - old[3].astype(np.int16)).mean()
            assert diff < 3.0, (rel, diff)
