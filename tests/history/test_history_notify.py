"""The webhook against a loopback HTTP server: success, a timeout, a 500 (a failure is a warning)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from sdeval.history.notify import alert_message, post


class Hook:
    """A loopback webhook that answers ``status`` after ``delay`` seconds and keeps what it got."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status, self.delay, self.bodies = status, delay, []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.bodies.append(json.loads(body))
                time.sleep(hook.delay)
                try:
                    self.send_response(hook.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Any]:
    made = []

    def make(**kw: Any) -> Hook:
        made.append(Hook(**kw))
        return made[-1]
    yield make
    for h in made:
        h.close()


RUN = {"id": 7, "uid": "abc", "label": "nightly <sdxl>", "command": "eval", "started_at": "2026-01-01T03:00:00",
       "git_commit": "0123456789abcdef0123"}
ALERT = {"metric": "clip_score", "value": 0.2, "baseline": 0.26, "reason": "0.2 is 0.06 lower (worse)"}


def test_success_posts_text_and_the_structured_alert(hook: Any) -> None:
    h = hook()
    out = post(h.url, alert_message(RUN, [ALERT]), timeout=5, retries=2)
    assert out.ok and out.attempts == 1 and out.status == 200 and out.warning is None
    (body,) = h.bodies
    assert body["text"].startswith("sdeval: 1 regression alert(s) in 'nightly <sdxl>'")
    assert "clip_score: 0.2 is 0.06 lower (worse)" in body["text"] and "commit 0123456789ab" in body["text"]
    assert body["sdeval"]["alerts"] == [ALERT] and body["sdeval"]["run"]["id"] == 7


def test_a_timeout_is_retried_then_a_warning(hook: Any) -> None:
    h = hook(delay=1.5)
    out = post(h.url, alert_message(RUN, [ALERT]), timeout=0.3, retries=1, backoff=0.01)
    assert not out.ok and out.attempts == 2 and len(h.bodies) == 2
    assert "failed" in out.warning and "the run is recorded" in out.warning
    assert "secret-path" not in out.warning  # a webhook's path is its secret


def test_a_500_is_retried_then_a_warning(hook: Any) -> None:
    h = hook(status=500)
    out = post(h.url, alert_message(RUN, [ALERT]), timeout=5, retries=2, backoff=0.01)
    assert not out.ok and out.status == 500 and out.attempts == 3 and len(h.bodies) == 3
    assert "HTTP 500" in out.warning


def test_a_4xx_is_not_retried(hook: Any) -> None:
    h = hook(status=404)
    out = post(h.url, alert_message(RUN, [ALERT]), timeout=5, retries=2, backoff=0.01)
    assert not out.ok and out.attempts == 1 and "HTTP 404" in out.warning
