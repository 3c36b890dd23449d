"""The ComfyUI client against the in-process fake (which follows the recordings of ComfyUI 0.3.64)."""

from __future__ import annotations

import io
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from sdeval.generators.comfyui.client import ComfyUIClient
from sdeval.generators.comfyui.errors import (
    ComfyUIConnectionError,
    ComfyUIError,
    ComfyUIExecutionError,
    ComfyUIHTTPError,
    ComfyUIInterruptedError,
    ComfyUIPromptLostError,
    ComfyUITimeoutError,
    ComfyUIValidationError,
    format_node_errors,
)
from sdeval.generators.comfyui.tracking import OutputRef

try:
    from comfy_fake import (FakeComfyUI, fail_graph, noise_graph, png_chunk_order, png_text_chunks, sd_graph,
                            slow_graph)
except ImportError:  # run from somewhere that does not put tests/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from comfy_fake import (FakeComfyUI, fail_graph, noise_graph, png_chunk_order, png_text_chunks, sd_graph,
                            slow_graph)

#: 04_prompt_valid observations.frame_sequence, without the status frame sent on connect
RECORDED_RUN = ["status", "status", "execution_start", "execution_cached", "progress_state", "executing",
                "progress_state", "progress_state", "executing", "executed", "progress_state", "execution_success",
                "status", "executing"]
#: 05_resubmit_identical observations.identical.frame_sequence, without the connect status
RECORDED_CACHE_HIT = ["status", "status", "execution_start", "execution_cached", "executed", "progress_state",
                      "execution_success", "status", "executing"]


def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@pytest.fixture
def fake() -> Iterator[FakeComfyUI]:
    with FakeComfyUI() as server:
        yield server


@pytest.fixture
def make_client() -> Iterator[Callable[..., ComfyUIClient]]:
    clients: list[ComfyUIClient] = []

    def make(url: str, **kw) -> ComfyUIClient:
        opts = dict(timeout=5.0, retries=1, backoff=0.01, poll_interval=0.05, wait_timeout=10.0)
        opts.update(kw)
        c = ComfyUIClient(url, **opts)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def frames_for(fake: FakeComfyUI, client_id: str) -> list[str]:
    return [f["type"] for sid, f in fake.frames_sent if sid == client_id]


# ------------------------------------------------------------------------------------------- happy path

def test_happy_path_over_websocket(fake, make_client):
    client = make_client(fake.url)
    graph = noise_graph(12345)
    workflow = {"last_node_id": 2, "nodes": [], "extra": {"sdeval": "workflow-stub"}}
    pid = client.submit(graph, extra_pnginfo={"workflow": workflow})
    result = client.wait(pid, timeout=5)

    assert str(uuid.UUID(pid, version=4)) == pid
    assert result.ok and result.status == "success" and result.via == "websocket"
    assert result.outputs == (OutputRef("2", "test_00001_.png", "sdeval", "output"),)
    assert result.cached_nodes == () and not result.cache_hit
    assert [m[0] for m in result.messages] == ["execution_start", "execution_cached", "execution_success"]
    assert 0 < result.seconds < 5

    # what went over the wire: client_id + our uuid on the POST, /api routes, no Origin anywhere
    post = next(r for r in fake.requests if r["method"] == "POST" and r["path"].endswith("/prompt"))
    assert post["path"] == "/api/prompt"
    assert post["json"]["client_id"] == client.client_id and post["json"]["prompt_id"] == pid
    assert post["json"]["extra_data"] == {"extra_pnginfo": {"workflow": workflow}}
    assert all(r["path"].startswith("/api/") for r in fake.requests)
    assert not any("Origin" in r["headers"] for r in fake.requests)
    until(lambda: frames_for(fake, client.client_id)[-1:] == ["executing"])
    assert frames_for(fake, client.client_id) == RECORDED_RUN

    [(name, data)] = client.fetch_outputs(result)
    assert name == "test_00001_.png"
    assert png_chunk_order(data) == ["IHDR", "tEXt", "tEXt", "IDAT", "IEND"]  # as SaveImage writes it
    texts = png_text_chunks(data)
    assert json.loads(texts["prompt"]) == graph and json.loads(texts["workflow"]) == workflow
    assert Image.open(io.BytesIO(data)).size == (64, 48)


def test_default_generator_pixels_follow_the_seed(fake, make_client):
    client = make_client(fake.url)
    a, b, a2 = (client.wait(client.submit(noise_graph(s, prefix=f"p{i}/x"))) for i, s in enumerate((7, 8, 7)))
    px = {k: np.asarray(Image.open(io.BytesIO(client.fetch_outputs(r)[0][1])))
          for k, r in (("a", a), ("b", b), ("a2", a2))}
    assert not np.array_equal(px["a"], px["b"])
    assert np.array_equal(px["a"], px["a2"])  # same seed, other prefix: not a cache hit, same pixels


def test_generator_hook_and_sd_graph(fake, make_client):
    def generator(graph):
        seed = graph["3"]["inputs"]["seed"]
        value = 0 if seed % 2 else 200  # odd seeds give a black (failing) frame
        buf = io.BytesIO()
        Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(buf, "PNG")
        return buf.getvalue()

    fake.generator = generator
    client = make_client(fake.url)
    results = [client.wait(client.submit(sd_graph(seed))) for seed in (1, 2)]
    means = []
    for r in results:
        [(_, data)] = client.fetch_outputs(r)
        assert json.loads(png_text_chunks(data)["prompt"])["9"]["class_type"] == "SaveImage"
        means.append(np.asarray(Image.open(io.BytesIO(data))).mean())
    assert means == [0.0, 200.0]


def test_api_fallback_on_old_server(make_client):
    with FakeComfyUI(api_routes=False) as old:
        client = make_client(old.url)
        result = client.wait(client.submit(noise_graph(1)))
        assert result.ok and result.via == "websocket"
        assert client.fetch_outputs(result)[0][0] == "test_00001_.png"
        paths = [(r["method"], r["path"]) for r in old.requests]
        assert paths[0] == ("GET", "/api/prompt")  # answered 404 once...
        assert all(not p.startswith("/api") for _, p in paths[1:])  # ...then the unprefixed routes only
        assert ("GET", "/ws") in paths and ("POST", "/prompt") in paths


# ------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("shape", ["new", "old"])
def test_validation_errors_name_node_class_and_input(shape, make_client):
    with FakeComfyUI(error_shape=shape) as server:
        client = make_client(server.url)

        g = noise_graph(1)
        g["1"]["inputs"]["width"] = 99999
        with pytest.raises(ComfyUIValidationError) as exc:
            client.submit(g)
        msg = str(exc.value)
        assert "node 1 (SeededNoiseImage), input 'width'" in msg and "bigger than max of 4096" in msg
        assert exc.value.error_type == ("prompt_outputs_failed_validation" if shape == "new" else None)
        assert exc.value.status == 400 and exc.value.node_errors["1"]["class_type"] == "SeededNoiseImage"
        posts = [r for r in server.requests if r["method"] == "POST"]
        assert len(posts) == 1  # a 4xx is never retried

        g = noise_graph(1)
        g["1"]["inputs"]["seed"] = 2 ** 64
        with pytest.raises(ComfyUIValidationError, match=r"node 1 \(SeededNoiseImage\), input 'seed'.*"
                                                         r"18446744073709551616 bigger than max"):
            client.submit(g)

        g = noise_graph(1)
        g["1"]["inputs"]["seed"] = "abc"
        with pytest.raises(ComfyUIValidationError, match=r"input 'seed'.*INT value.*invalid literal"):
            client.submit(g)

        g = noise_graph(1)
        del g["2"]["inputs"]["images"]
        with pytest.raises(ComfyUIValidationError, match=r"node 2 \(SaveImage\), input 'images': Required input"):
            client.submit(g)

        g = noise_graph(1)
        g["2"]["inputs"]["images"] = ["99", 0]
        with pytest.raises(ComfyUIValidationError) as exc:
            client.submit(g)
        assert "node 2 (SaveImage), input 'images'" in str(exc.value) and "node 99" in str(exc.value)

        with pytest.raises(ComfyUIValidationError, match=r"node 1 \(NoSuchNode\).*does not exist"):
            client.submit({"1": {"class_type": "NoSuchNode", "inputs": {}}})

        with pytest.raises(ComfyUIValidationError, match="no outputs"):
            client.submit({"1": noise_graph()["1"]})
        assert server.submitted == []  # a rejected prompt never runs


def test_recorded_node_errors_are_formatted():
    # body of the recorded "type mismatch link (LATENT into IMAGE)" answer (08_validation_errors)
    node_errors = {"2": {"errors": [{"type": "return_type_mismatch",
                                     "message": "Return type mismatch between linked nodes",
                                     "details": "image, received_type(LATENT) mismatch input_type(IMAGE)",
                                     "extra_info": {"input_name": "image", "input_config": ["IMAGE", {}],
                                                    "received_type": "LATENT", "linked_node": ["3", 0]}}],
                         "dependent_outputs": ["2"], "class_type": "ImageStats"}}
    [line] = format_node_errors(node_errors)
    assert line.startswith("node 2 (ImageStats), input 'image': Return type mismatch")
    assert "received_type(LATENT)" in line and line.endswith("[return_type_mismatch]")


def test_partially_valid_graph_runs_with_warnings(fake, make_client):
    client = make_client(fake.url)
    g = noise_graph(3)
    g["3"] = {"class_type": "SaveImage", "inputs": {"images": ["99", 0], "filename_prefix": "x"}}
    result = client.wait(client.submit(g))
    assert result.ok and [o.node_id for o in result.outputs] == ["2"]
    assert len(result.warnings) == 1 and result.warnings[0].startswith("node 3 (SaveImage), input 'images'")


@pytest.mark.parametrize("use_websocket", [True, False])
def test_execution_error_names_node_class_and_exception(use_websocket, fake, make_client):
    client = make_client(fake.url, use_websocket=use_websocket)
    with pytest.raises(ComfyUIExecutionError) as exc:
        client.wait(client.submit(fail_graph(2)))
    err = exc.value
    assert "node 2 (FailIfSeedEven) raised ValueError: sdeval_test_nodes: seed 2 is even" in str(err)
    assert (err.node_id, err.node_type, err.exception_type) == ("2", "FailIfSeedEven", "ValueError")
    assert err.result.status == "error" and err.result.outputs == ()
    assert err.result.via == ("websocket" if use_websocket else "history")
    # failures are not cached: an odd seed runs, and the even one fails again
    assert client.wait(client.submit(fail_graph(3))).ok
    again = client.wait(client.submit(fail_graph(2)), raise_on_error=False)
    assert again.status == "error" and "ValueError" in again.error


def test_node_hook_failure_is_an_execution_error(fake, make_client):
    def hook(graph, node_id):
        if graph[node_id]["class_type"] == "VAEDecode":
            raise RuntimeError("out of memory (fake)")

    fake.node_hook = hook
    client = make_client(fake.url)
    result = client.wait(client.submit(sd_graph(5)), raise_on_error=False)
    assert result.status == "error"
    assert "node 8 (VAEDecode) raised RuntimeError: out of memory (fake)" in result.error


# ------------------------------------------------------------------------------------------- cache

@pytest.mark.parametrize("use_websocket", [True, False])
def test_identical_resubmission_is_a_cache_hit(use_websocket, fake, make_client):
    client = make_client(fake.url, use_websocket=use_websocket)
    graph = noise_graph(12345)
    first = client.wait(client.submit(graph, extra_pnginfo={"workflow": {"v": 1}}))
    files_before = dict(fake.files)

    again = client.wait(client.submit(graph, extra_pnginfo={"workflow": {"v": 2}}))
    assert again.ok and again.cache_hit and again.fresh_outputs == ()
    assert again.outputs == first.outputs  # the OLD file name, as recorded
    assert set(again.cached_nodes) == {"1", "2"}
    assert client.fetch_outputs(again, only_fresh=True) == []
    assert fake.files == files_before  # nothing new was written
    if use_websocket:
        until(lambda: frames_for(fake, client.client_id)[-1:] == ["executing"]
              and frames_for(fake, client.client_id).count("execution_start") == 2)
        assert frames_for(fake, client.client_id)[len(RECORDED_RUN):] == RECORDED_CACHE_HIT

    reseeded = client.wait(client.submit(noise_graph(12346)))
    assert not reseeded.cache_hit and reseeded.outputs[0].filename == "test_00002_.png"

    client.free()  # POST /free empties the cache: the identical graph runs again
    client.wait(client.submit(noise_graph(12346)))
    rerun = client.wait(client.submit(graph))
    assert not rerun.cache_hit and rerun.outputs[0].filename == "test_00004_.png"


# ------------------------------------------------------------------------------------------- socket trouble

def test_dropped_socket_falls_back_to_history_polling(fake, make_client):
    fake.drop_ws_on = "execution_start"
    fake.refuse_ws_after_drop = True
    client = make_client(fake.url)
    result = client.wait(client.submit(noise_graph(21)), timeout=5)
    assert result.ok and result.via == "history"
    assert result.outputs == (OutputRef("2", "test_00001_.png", "sdeval", "output"),)
    assert [m[0] for m in result.messages] == ["execution_start", "execution_cached", "execution_success"]
    assert not client.websocket_connected and client.ws_last_error


def test_socket_reconnects_after_a_drop(fake, make_client):
    fake.drop_ws_on = "executed"
    client = make_client(fake.url)
    first = client.wait(client.submit(noise_graph(31)), timeout=5)
    assert first.ok and first.outputs == (OutputRef("2", "test_00001_.png", "sdeval", "output"),)
    until(lambda: client.websocket_connected)
    assert client.wait(client.submit(noise_graph(32)), timeout=5).via == "websocket"


def test_frames_missed_during_a_reconnect_are_taken_from_history(fake, make_client):
    early = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "early/a"}}
    graph = {"0": early, **slow_graph(33, seconds=0.6, steps=6)}  # runs 1, 0, then 2 (slow) and 3
    graph["3"]["inputs"]["filename_prefix"] = "late/b"
    fake.drop_ws_on = "executed"  # the early SaveImage's frame is lost; the socket is back before the end
    client = make_client(fake.url)
    result = client.wait(client.submit(graph), timeout=5)
    assert result.ok and result.via == "websocket"
    assert sorted(o.filename for o in result.outputs) == ["a_00001_.png", "b_00001_.png"]


def test_refused_socket_uses_polling(fake, make_client):
    fake.ws_mode = "refuse"
    client = make_client(fake.url)
    result = client.wait(client.submit(noise_graph(41)), timeout=5)
    assert result.ok and result.via == "history" and "403" in (client.ws_last_error or "")


def test_silent_socket_is_caught_by_safety_polls(fake, make_client):
    fake.ws_mode = "silent"  # what an old socket does after a reconnect with the same clientId
    client = make_client(fake.url, safety_poll_interval=0.1)
    result = client.wait(client.submit(noise_graph(51)), timeout=5)
    assert result.ok and result.via == "history" and client.websocket_connected


def test_fake_silences_old_socket_on_reconnect_with_same_client_id(fake):
    from websockets.sync.client import connect

    cid = uuid.uuid4().hex
    url = fake.url.replace("http", "ws") + f"/ws?clientId={cid}"
    with connect(url) as old:
        assert json.loads(old.recv(timeout=2))["type"] == "status"
        with connect(url) as new:
            assert json.loads(new.recv(timeout=2))["data"]["sid"] == cid
            httpx.post(fake.url + "/prompt", json={"prompt": noise_graph(61), "client_id": cid,
                                                  "prompt_id": str(uuid.uuid4())})
            seen = []
            while "execution_success" not in seen:
                seen.append(json.loads(new.recv(timeout=2))["type"])
        with pytest.raises(TimeoutError):
            old.recv(timeout=0.2)


# ------------------------------------------------------------------------------------------- slow / down

def test_slow_prompt_times_out_then_cancel_interrupts_it(fake, make_client):
    client = make_client(fake.url)
    pid = client.submit(slow_graph(101, seconds=3.0, steps=30))
    with pytest.raises(ComfyUITimeoutError, match=r"did not finish within 0.3s.*node 2 \(SlowPassthrough\)"):
        client.wait(pid, timeout=0.3)
    assert client.cancel(pid) == "interrupted"
    with pytest.raises(ComfyUIInterruptedError, match=r"interrupted at node 2 \(SlowPassthrough\)") as exc:
        client.wait(pid, timeout=5)
    assert exc.value.result.status == "interrupted"
    assert client.history(pid)[pid]["status"]["status_str"] == "error"


def test_cancel_pending_and_global_interrupt(fake, make_client):
    client = make_client(fake.url)
    a = client.submit(slow_graph(102, seconds=3.0, steps=30))
    b = client.submit(slow_graph(103, seconds=3.0, steps=30))
    until(lambda: fake.queue_ids()[0] == [a])
    assert client.cancel(b) == "dequeued"
    assert client.wait(b, raise_on_error=False).status == "cancelled"
    client.interrupt()  # global: stops whatever runs
    assert client.wait(a, raise_on_error=False).status == "interrupted"
    assert client.cancel(a) == "not_queued"


def test_prompt_deleted_by_someone_else_is_lost(fake, make_client):
    client = make_client(fake.url, safety_poll_interval=0.05)
    a = client.submit(slow_graph(104, seconds=3.0, steps=30))
    b = client.submit(slow_graph(105, seconds=3.0, steps=30))
    httpx.post(fake.url + "/queue", json={"delete": [b]})
    with pytest.raises(ComfyUIPromptLostError, match="neither queued, running nor in the history"):
        client.wait(b, timeout=5)
    assert client.cancel_all() == [a]
    assert client.wait(a, raise_on_error=False).status == "interrupted"


def test_slow_http_answers_time_out(make_client):
    with FakeComfyUI(http_delay=0.5) as slow:
        client = make_client(slow.url, timeout=0.1, retries=1)
        t0 = time.monotonic()
        with pytest.raises(ComfyUITimeoutError, match=r"did not answer GET /api/prompt within 0.1s \(2 attempts"):
            client.system_stats()
        assert time.monotonic() - t0 < 2


def test_lost_answer_to_post_prompt_is_not_resubmitted(fake, make_client):
    fake.slow_answers["POST /prompt"] = 0.5  # queued at once, answered too late
    client = make_client(fake.url, timeout=0.2, retries=2)
    pid = client.submit(noise_graph(81))
    fake.slow_answers.clear()
    assert client.wait(pid).ok
    assert [p for p, _ in fake.submitted] == [pid]  # checked the queue/history instead of sending it twice


def test_server_down_is_a_clear_error_at_once(make_client):
    # a refused connection is not retried (core.http's policy): nobody listens, waiting will not help
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    client = make_client(url, retries=5, backoff=8.0)
    t0 = time.monotonic()
    with pytest.raises(ComfyUIConnectionError) as exc:
        client.submit(noise_graph(1))
    assert time.monotonic() - t0 < 2
    assert str(exc.value).startswith(f"cannot reach ComfyUI at {url}: ")
    assert "(1 attempt over" in str(exc.value) and "--comfy-url" in str(exc.value)
    assert isinstance(exc.value, ComfyUIError) and exc.value.exit_code == 2


def test_dropped_connections_are_retried_with_backoff(make_client):
    # accepts and closes at once: a dropped connection, retried with exponential back-off
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def drop() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.close()

    t = threading.Thread(target=drop, daemon=True)
    t.start()
    try:
        client = make_client(f"http://127.0.0.1:{srv.getsockname()[1]}", retries=2, backoff=0.01)
        sleeps: list[float] = []
        client._transport.sleep = sleeps.append
        with pytest.raises(ComfyUIConnectionError, match=r"\(3 attempts over"):
            client.system_stats()
        assert sleeps == [0.01, 0.02]  # exponential backoff between the 3 attempts
    finally:
        stop.set()
        t.join()
        srv.close()


def test_5xx_is_retried_4xx_is_not(fake, make_client):
    client = make_client(fake.url, retries=2, backoff=0.001)
    fake.fail_next(2, 503)
    assert client.server_version() == "0.3.64"
    assert [r["path"] for r in fake.requests].count("/api/prompt") == 3  # two 503s, then the answer

    fake.requests.clear()
    fake.fail_next(5, 500)
    with pytest.raises(ComfyUIHTTPError, match=r"500.*Server got itself in trouble.*after 3 attempts") as exc:
        client.system_stats()
    assert exc.value.status == 500 and len(fake.requests) == 3


# ------------------------------------------------------------------------------------------- concurrency, misc

def test_several_prompts_in_flight(fake, make_client):
    client = make_client(fake.url)
    ids = [client.submit(noise_graph(s)) for s in (1, 2, 3, 4)]
    results = list(client.as_completed(ids, timeout=5))
    assert sorted(r.prompt_id for r in results) == sorted(ids)
    assert len({r.outputs[0].filename for r in results}) == 4

    more = [client.submit(noise_graph(s)) for s in (5, 6, 7)]
    got: dict[str, str] = {}
    threads = [threading.Thread(target=lambda p=p: got.__setitem__(p, client.wait(p).status)) for p in more]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert got == {p: "success" for p in more}


def test_wait_for_a_prompt_submitted_elsewhere(fake, make_client):
    first = make_client(fake.url)
    pid = first.submit(noise_graph(71))
    first.wait(pid)
    later = make_client(fake.url, use_websocket=False)  # e.g. resuming an interrupted run
    result = later.wait(pid)
    assert result.ok and result.via == "history" and result.outputs[0].filename == "test_00001_.png"


def test_misc_routes(fake, make_client):
    client = make_client(fake.url)
    assert client.system_stats()["system"]["comfyui_version"] == "0.3.64"
    assert client.object_info("SeededNoiseImage")["SeededNoiseImage"]["input"]["required"]["seed"][0] == "INT"
    assert client.object_info("NoSuchNode") == {}
    assert client.history("unknown-id") == {}
    assert client.queue() == {"queue_running": [], "queue_pending": []}
    with pytest.raises(ComfyUIHTTPError, match="no file output/nope.png"):
        client.view("nope.png")
    fake.version = None
    assert client.server_version() is None


def test_bad_graphs_and_ids_fail_before_sending(fake, make_client):
    client = make_client(fake.url)
    with pytest.raises(ComfyUIError, match="non-empty mapping"):
        client.submit([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="canonical lowercase UUID"):
        client.submit(noise_graph(1), prompt_id="sdeval-custom-id")
    pid = str(uuid.uuid4())
    client.wait(client.submit(noise_graph(1), prompt_id=pid))
    with pytest.raises(ComfyUIError, match="already submitted"):
        client.submit(noise_graph(2), prompt_id=pid)
    # the fake answers these like the real server: 500 with a text body
    assert httpx.post(fake.url + "/prompt", content=b"{not json").status_code == 500
    assert httpx.post(fake.url + "/prompt", json={"prompt": [1, 2, 3]}).status_code == 500


def test_fake_enforces_origin_like_comfyui(fake):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    assert httpx.get(fake.url + "/system_stats", headers={"Origin": fake.url}).status_code == 200
    other = fake.url.replace("127.0.0.1", "localhost")
    assert httpx.get(fake.url + "/system_stats", headers={"Origin": other}).status_code == 403
    assert httpx.post(fake.url + "/prompt", headers={"Origin": "http://example.com"},
                      json={"prompt": noise_graph(1)}).status_code == 403
    with pytest.raises(InvalidStatus):
        connect(fake.url.replace("http", "ws") + "/ws", origin="http://example.com", open_timeout=2)


# ------------------------------------------------------------------------------------------- the fake vs the recordings

#: ``../shared/comfyui`` beside the repository (CI has it there)
RECORDINGS = Path(__file__).resolve().parents[2].parent / "shared" / "comfyui"
_VOLATILE = {"number", "timestamp", "traceback", "current_inputs", "current_outputs"}


def recordings() -> Path:
    """The recordings folder; skips where it is absent, except under ``CI=true``, where a missing
    folder is a failure (a replay test that silently never runs checks nothing)."""
    if RECORDINGS.is_dir():
        return RECORDINGS
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"the recordings of a real ComfyUI are missing: {RECORDINGS} (CI=true: ../shared must be "
                    "beside the repository)")
    pytest.skip(f"recordings of a real ComfyUI are not beside the repo ({RECORDINGS})")


def test_missing_recordings_fail_under_ci_and_skip_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setitem(globals(), "RECORDINGS", tmp_path / "absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="recordings of a real ComfyUI are missing"):
        recordings()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        recordings()
    monkeypatch.setitem(globals(), "RECORDINGS", tmp_path)
    monkeypatch.setenv("CI", "true")
    assert recordings() == tmp_path


def _timestamped(x) -> list:
    """Which execution messages carry a ``timestamp`` (the queue / execution split reads them)."""
    found = []
    if isinstance(x, dict):
        for k, v in x.items():
            if k == "messages" and isinstance(v, list):
                found += [(m[0], "timestamp" in m[1]) for m in v if isinstance(m, list) and len(m) == 2]
            else:
                found += _timestamped(v)
    elif isinstance(x, list):
        for v in x:
            found += _timestamped(v)
    return found


def _normalise(x):
    if isinstance(x, dict):
        out = {k: _normalise(v) for k, v in x.items() if k not in _VOLATILE}
        if "prompt" in out and isinstance(out["prompt"], list):
            out["prompt"] = out["prompt"][1:]  # [number, id, graph, extra, outputs]: the number is volatile
        if "text" in out and isinstance(out["text"], list):
            out["text"] = ["<ImageStats text>"]  # real pixels, not reproduced
        return out
    if isinstance(x, list):
        return [_normalise(v) for v in x]
    return x


def test_fake_replays_the_recorded_exchanges(fake):
    """Every recorded POST /prompt, /history and /view answer and every websocket frame sequence of the
    scenarios 04-09 (run in the recorded order, so file counters and the cache line up)."""
    from websockets.sync.client import connect

    folder = recordings()

    def kind(frame):
        data = frame["data"]
        return f"{frame['type']}({data.get('node')})" if frame["type"] in ("executing", "executed") else frame["type"]

    http = httpx.Client(base_url=fake.url, trust_env=False)
    checked = 0
    for name in ("04_prompt_valid", "05_resubmit_identical", "06_changed_seed", "07_core_only_graph",
                 "08_validation_errors", "09_execution_error"):
        rec = json.loads((folder / f"{name}.json").read_text())
        cid = rec["ws_frames"][0]["client_id"]
        with connect(fake.url.replace("http", "ws") + f"/ws?clientId={cid}") as ws:
            ws.recv(timeout=2)  # status on connect
            for ex in rec["exchanges"]:
                req, want = ex["request"], ex["response"]
                if not req["path"].removeprefix("/api").startswith(("/prompt", "/history/", "/view", "/free")):
                    continue
                fake.wait_idle()
                if req["method"] == "POST":
                    kw = {"json": req["json"]} if "json" in req else {"content": b"{not json"}
                    got = http.post(req["path"], **kw)
                else:
                    got = http.get(req["path"])
                assert got.status_code == want["status"], (name, ex["label"])
                if "json" in want:
                    assert _normalise(got.json()) == _normalise(want["json"]), (name, ex["label"])
                    assert _timestamped(got.json()) == _timestamped(want["json"]), (name, ex["label"])
                checked += 1
            fake.wait_idle()
            frames = []
            while True:
                try:
                    frames.append(kind(json.loads(ws.recv(timeout=0.2))))
                except TimeoutError:
                    break
        assert frames == [kind(f["data"]) for f in rec["ws_frames"][1:] if f["client_id"] == cid], name
    http.close()
    assert checked >= 40


def test_execution_time_comes_from_the_recorded_history_timestamps():
    from sdeval.generators.comfyui.tracking import PromptResult

    rec = json.loads((recordings() / "04_prompt_valid.json").read_text())
    entries = [e for ex in rec["exchanges"] if "/history/" in ex["request"]["path"]
               for e in (ex["response"].get("json") or {}).values()]
    messages = tuple((k, d) for k, d in entries[-1]["status"]["messages"])
    stamps = {k: d["timestamp"] for k, d in messages}
    result = PromptResult("p", "success", messages=messages, seconds=30.0)
    assert result.execution_seconds == round((stamps["execution_success"] - stamps["execution_start"]) / 1000, 4)
    assert result.queue_seconds == round(30.0 - result.execution_seconds, 4)
    assert PromptResult("p", "success", seconds=1.0).execution_seconds is None  # no timestamps: unknown
