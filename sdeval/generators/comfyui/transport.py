"""HTTP to one ComfyUI server: base URL, the ``/api`` route fallback, retries and status handling.

Every request goes through :func:`sdeval.core.http.send` under one :class:`~sdeval.core.http.RetryPolicy`:
timeouts, dropped connections and 5xx / 429 answers are retried; a refused connection or a name
that does not resolve fails at once (no server there, retrying only makes the user wait); a 4xx
never is. A request that is not idempotent (``POST /prompt``) raises :class:`Ambiguous` for a
failure that may have reached the server, so the caller checks instead of sending it twice.

Routes exist with and without ``/api``; ``/api`` is preferred, and the unprefixed routes are used
when the server answers 404 there (servers from before mid-2024). No ``Origin`` header is sent
(ComfyUI answers 403 when Origin and Host differ).
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from sdeval.core.http import RetryPolicy, TransportFailure, make_client, send
from sdeval.generators.comfyui.errors import (ComfyUIConnectionError, ComfyUIError, ComfyUIHTTPError,
                                              ComfyUIProtocolError, ComfyUITimeoutError, snippet)


class Ambiguous(Exception):
    """A non-idempotent request may or may not have reached the server (timeout, dropped connection)."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(str(exc))
        self.exc = exc


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Transport:
    """Requests to the ComfyUI server at ``url`` (already checked: http(s) with a host).

    ``trust_env`` None: environment proxies are used except for a loopback server (a proxy must
    not capture 127.0.0.1). ``sleep`` is the back-off's sleep (tests replace it).
    """

    def __init__(self, url: str, *, timeout: float, connect_timeout: float, policy: RetryPolicy,
                 prefer_api: bool = True, trust_env: bool | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.policy = policy
        self.trust_env = (not is_loopback(urlsplit(self.url).hostname)) if trust_env is None else trust_env
        self.http = make_client(timeout=self.timeout, connect_timeout=self.connect_timeout,
                                trust_env=self.trust_env, user_agent="sdeval-comfyui-client")
        self.sleep: Callable[[float], None] = time.sleep
        self._prefix: str | None = None if prefer_api else ""
        self._prefix_lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def route_prefix(self) -> str:
        """``/api`` or ``""``, found out with the first request (``GET /api/prompt``, else ``GET /prompt``)."""
        if self._prefix is not None:
            return self._prefix
        with self._prefix_lock:
            if self._prefix is None:
                resp = self.send("GET", "/api/prompt")
                if resp.status_code == 404:
                    old = self.send("GET", "/prompt")
                    if old.status_code == 404:
                        raise ComfyUIProtocolError(
                            f"no ComfyUI API at {self.url}: GET /api/prompt and GET /prompt both answered 404")
                    self.raise_for_status(old, "GET", "/prompt")
                    self._prefix = ""
                else:
                    self.raise_for_status(resp, "GET", "/api/prompt")
                    self._prefix = "/api"
        return self._prefix

    def send(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             content: bytes | None = None, timeout: float | None = None,
             idempotent: bool = True) -> httpx.Response:
        """One request to ``path`` (no route prefix added) under the retry policy.

        Returns the answer (a 5xx only once the attempts are spent: the caller reports its body).
        Raises :class:`ComfyUIConnectionError` / :class:`ComfyUITimeoutError` when no answer came, and
        :class:`Ambiguous` for a non-idempotent request whose failure may have reached the server.
        """
        headers = {"Content-Type": "application/json"} if content is not None else None
        kw: dict[str, Any] = {}
        if timeout is not None:
            kw["timeout"] = httpx.Timeout(timeout, connect=min(timeout, self.connect_timeout))
        try:
            return send(self.http, method, self.url + path, policy=self.policy, idempotent=idempotent,
                        sleep=self.sleep, params=params, content=content, headers=headers, **kw).response
        except TransportFailure as failure:
            exc = failure.cause
            connect = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
            if not idempotent and not connect and not failure.unreachable:
                raise Ambiguous(exc) from exc
            tries = failure.tries()
            if connect or failure.unreachable:
                raise ComfyUIConnectionError(
                    f"cannot reach ComfyUI at {self.url}: {failure} ({tries}). Is the server running and "
                    f"listening there? Start it (python main.py --listen 127.0.0.1 --port 8188) or pass its URL "
                    f"(--comfy-url).") from exc
            if isinstance(exc, httpx.TimeoutException):
                limit = timeout if timeout is not None else self.timeout
                raise ComfyUITimeoutError(
                    f"ComfyUI at {self.url} did not answer {method} {path} within {limit:g}s ({tries})") from exc
            raise ComfyUIConnectionError(
                f"cannot reach ComfyUI at {self.url}: {type(exc).__name__}: {exc} ({tries})") from exc

    def request(self, method: str, route: str, *, json_body: Any = None,
                params: Mapping[str, Any] | None = None, timeout: float | None = None,
                idempotent: bool = True) -> httpx.Response:
        """:meth:`send` to ``route`` under the server's route prefix, with a JSON body."""
        content = None
        if json_body is not None:
            try:
                content = json.dumps(json_body).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise ComfyUIError(f"cannot send {route}: the body is not JSON-serialisable ({exc})") from exc
        return self.send(method, self.route_prefix() + route, params=params, content=content, timeout=timeout,
                         idempotent=idempotent)

    def raise_for_status(self, resp: httpx.Response, method: str, route: str) -> None:
        if 200 <= resp.status_code < 300:
            return
        body = snippet(resp.text or "")
        status = resp.status_code
        msg = f"ComfyUI at {self.url} answered {status} {resp.reason_phrase} to {method} {route}"
        if status == 403:
            msg += (" (ComfyUI refuses requests whose Origin header does not match the Host header; "
                    "a proxy in between may be adding one)")
        if body:
            msg += f": {body}"
        if status >= 500:
            msg += f" (after {self.policy.attempts} attempts)"
        raise ComfyUIHTTPError(msg, status=status, method=method, route=route, body=body)

    def json(self, resp: httpx.Response, method: str, route: str) -> Any:
        self.raise_for_status(resp, method, route)
        try:
            return resp.json()
        except ValueError as exc:
            raise ComfyUIProtocolError(f"ComfyUI at {self.url} answered {method} {route} with non-JSON: "
                                       f"{snippet(resp.text or '', 120)!r}") from exc

    def get_json(self, route: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.json(self.request("GET", route, params=params), "GET", route)

    def post(self, route: str, body: Any = None) -> httpx.Response:
        resp = self.request("POST", route, json_body=body)
        self.raise_for_status(resp, "POST", route)
        return resp

    def queue_ids(self) -> tuple[set[str], set[str]]:
        """``GET /queue`` as (running prompt ids, pending prompt ids)."""
        q = self.get_json("/queue")

        def ids(key: str) -> set[str]:
            return {str(i[1]) for i in q.get(key) or [] if isinstance(i, list) and len(i) > 1}

        return ids("queue_running"), ids("queue_pending")

    def history_entry(self, prompt_id: str) -> Mapping[str, Any] | None:
        """``GET /history/{id}``'s entry for the prompt, None while queued or running (or never known)."""
        return self.get_json(f"/history/{prompt_id}").get(prompt_id) or None
