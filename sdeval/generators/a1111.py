"""AUTOMATIC1111's web UI API (``/sdapi/v1/txt2img``) as a regeneration backend.

The payload is a txt2img body (built by :mod:`sdeval.gates.recipes`); face restoration is its own
``restore_faces`` switch. The API is synchronous, so each request runs in a worker thread.
Requests go through :func:`sdeval.core.http.send` under the same retry policy as ComfyUI's; the
txt2img POST is not idempotent, so a timeout or a dropped connection costs the attempt instead of
being sent again (a 5xx is retried: the server answered that it did not generate).
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from sdeval.core.errors import SdevalError
from sdeval.core.http import RetryPolicy, TransportFailure, make_client, send
from sdeval.formats.png_text import png_with_text
from sdeval.generators.backends import Outcome

A1111_SEED_BITS = 32


class A1111ConnectionError(SdevalError):
    """AUTOMATIC1111 cannot be reached: the run stops (every attempt would fail the same way)."""



class A1111Backend:
    """AUTOMATIC1111's web UI API (``--api``). Requests are synchronous: one worker thread each."""

    name = "a1111"
    seed_bits = A1111_SEED_BITS

    def __init__(self, url: str, *, concurrency: int = 2, timeout: float = 600.0,
                 connect_timeout: float = 5.0, policy: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if "://" not in url:
            url = "http://" + url
        self.url = url.rstrip("/")
        self.policy = policy
        self._sleep = sleep
        self._http = make_client(timeout=timeout, connect_timeout=connect_timeout, trust_env=False,
                                 user_agent="sdeval-a1111-client")
        self._pool = cf.ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="sdeval-a1111")
        self._futures: dict[str, cf.Future[Outcome]] = {}

    def _unreachable(self, exc: TransportFailure) -> A1111ConnectionError:
        return A1111ConnectionError(f"cannot reach AUTOMATIC1111 at {self.url}: {exc} ({exc.tries()}). Is the "
                                    "web UI running with --api there? Pass its URL with --a1111-url.")

    @staticmethod
    def _no_connection(exc: TransportFailure) -> bool:
        """Nothing reached the server (refused, unresolvable, connect timeouts): the run must stop."""
        return exc.unreachable or isinstance(exc.cause, (httpx.ConnectError, httpx.ConnectTimeout))

    def _interrupt(self) -> None:
        with contextlib.suppress(TransportFailure):
            send(self._http, "POST", self.url + "/sdapi/v1/interrupt", policy=RetryPolicy(retries=0),
                 idempotent=False, timeout=10)

    def describe(self) -> dict[str, Any]:
        """Also checks the server is there, so a wrong URL fails before any attempt is spent."""
        version = None
        try:
            resp = send(self._http, "GET", self.url + "/internal/sysinfo", policy=self.policy,
                        sleep=self._sleep, timeout=10).response
        except TransportFailure as exc:
            if self._no_connection(exc):
                raise self._unreachable(exc) from exc
            resp = None
        if resp is not None and resp.status_code == 200:
            with contextlib.suppress(ValueError, AttributeError):
                version = resp.json().get("Version")
        return {"backend": self.name, "url": self.url, "server_version": version}

    def submit(self, payload: Mapping[str, Any]) -> str:
        ticket = str(uuid.uuid4())
        self._futures[ticket] = self._pool.submit(self._txt2img, ticket, dict(payload))
        return ticket

    def _txt2img(self, ticket: str, body: dict[str, Any]) -> Outcome:
        t0 = time.monotonic()

        def timing() -> dict[str, float]:  # the API has no queue: all of it is execution
            seconds = round(time.monotonic() - t0, 4)
            return {"seconds": seconds, "queue_seconds": 0.0, "execution_seconds": seconds}

        def failed(msg: str) -> Outcome:
            return Outcome(ticket=ticket, ok=False, error=msg, **timing())

        try:
            resp = send(self._http, "POST", self.url + "/sdapi/v1/txt2img", policy=self.policy,
                        idempotent=False, sleep=self._sleep, json=body).response
        except TransportFailure as exc:
            if self._no_connection(exc):
                raise self._unreachable(exc) from exc
            return failed(f"AUTOMATIC1111 at {self.url}: POST /sdapi/v1/txt2img failed: "
                          f"{type(exc.cause).__name__}: {exc} ({exc.tries()})")
        if resp.status_code == 404:
            return failed(f"AUTOMATIC1111 at {self.url} has no /sdapi/v1/txt2img (start it with --api)")
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code != 200 or not isinstance(data, dict):
            detail = (data.get("detail") or data.get("errors") or data.get("error")) if isinstance(data, dict) else None
            return failed(f"AUTOMATIC1111 answered {resp.status_code} to txt2img: "
                          f"{detail if detail is not None else resp.text[:300]}")
        try:
            info = json.loads(data.get("info") or "{}")
        except ValueError:
            info = {}
        infotexts = info.get("infotexts") or [] if isinstance(info, dict) else []
        images = []
        for i, b64 in enumerate(data.get("images") or []):
            try:
                png = base64.b64decode(b64.split(",", 1)[-1])
            except (ValueError, AttributeError):
                return failed("AUTOMATIC1111 sent an image that is not base64")
            if i < len(infotexts) and isinstance(infotexts[i], str):
                png = png_with_text(png, "parameters", infotexts[i])
            images.append((f"txt2img_{i:02d}.png", png))
        if not images:
            return failed("AUTOMATIC1111 returned no image")
        return Outcome(ticket=ticket, ok=True, images=tuple(images), **timing())

    def next_completed(self, tickets: Sequence[str], timeout: float) -> Outcome | None:
        futures = {self._futures[t]: t for t in tickets if t in self._futures}
        done, _ = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        if not done:
            return None
        fut = next(iter(done))
        ticket = futures[fut]
        del self._futures[ticket]
        if fut.cancelled():
            return Outcome(ticket=ticket, ok=False, error="cancelled")
        try:
            return fut.result()
        except A1111ConnectionError:
            raise
        except Exception as exc:  # noqa: BLE001 - a malformed answer costs this attempt, not the run
            return Outcome(ticket=ticket, ok=False, error=f"{type(exc).__name__}: {exc}")

    def cancel(self, ticket: str) -> None:
        fut = self._futures.get(ticket)
        if fut is not None and not fut.cancel():
            self._interrupt()

    def cancel_all(self) -> None:
        running = [t for t, f in self._futures.items() if not f.cancel() and not f.done()]
        if running:
            self._interrupt()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()
