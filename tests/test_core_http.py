"""The one retry policy, against a real local HTTP server (no mocks of httpx)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from sdeval.core.http import RetryPolicy, TransportFailure, check_url, make_client, send


class _Handler(BaseHTTPRequestHandler):
    plan: list[int] = []
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(self.path)
        status = self.plan.pop(0) if self.plan else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Handler.plan, _Handler.seen = [], []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_5xx_and_429_are_retried_4xx_is_not(server):
    sleeps: list[float] = []
    with make_client(timeout=5) as c:
        _Handler.plan = [503, 429, 200]
        ex = send(c, "GET", server + "/a", policy=RetryPolicy(retries=3, backoff=0.5), sleep=sleeps.append)
        assert ex.response.status_code == 200 and ex.attempts == 3 and sleeps == [0.5, 1.0]
        _Handler.plan = [404]
        ex = send(c, "GET", server + "/b", policy=RetryPolicy(retries=3), sleep=sleeps.append)
        assert ex.response.status_code == 404 and ex.attempts == 1
        _Handler.plan = [500] * 5
        ex = send(c, "GET", server + "/c", policy=RetryPolicy(retries=2), sleep=lambda s: None)
        assert ex.response.status_code == 500 and ex.attempts == 3  # the last answer, for its body


def test_refused_and_unresolvable_fail_at_once():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    with make_client(timeout=5) as c:
        for url in (f"http://127.0.0.1:{port}/x", "http://no-such-host.invalid/x"):
            t0 = time.monotonic()
            with pytest.raises(TransportFailure) as info:
                send(c, "GET", url, policy=RetryPolicy(retries=5, backoff=8), sleep=time.sleep)
            assert info.value.unreachable and info.value.attempts == 1
            assert time.monotonic() - t0 < 2


def test_timeouts_are_retried_only_when_idempotent():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)  # accepts connections, never answers
    url = f"http://127.0.0.1:{s.getsockname()[1]}/slow"
    try:
        with httpx.Client(timeout=0.2) as c:
            with pytest.raises(TransportFailure) as info:
                send(c, "GET", url, policy=RetryPolicy(retries=2, backoff=0), sleep=lambda x: None)
            assert info.value.attempts == 3 and not info.value.unreachable
            with pytest.raises(TransportFailure) as info:
                send(c, "POST", url, policy=RetryPolicy(retries=2, backoff=0), idempotent=False,
                     sleep=lambda x: None)
            assert info.value.attempts == 1  # it may have reached the server: the caller decides
    finally:
        s.close()


@pytest.mark.parametrize("bad", ["not-a-url", "ftp://host/x", "http://", "127.0.0.1:8188"])
def test_check_url_refuses_what_is_not_an_http_url(bad):
    with pytest.raises(ValueError, match="not an http"):
        check_url(bad, "--comfy-url")


def test_check_url_keeps_a_good_one():
    assert check_url("http://127.0.0.1:8188/", "--comfy-url") == "http://127.0.0.1:8188"
