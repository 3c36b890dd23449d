"""ComfyUI client: submit API-format graphs, wait for them, fetch the files they saved.

Agrees with the exchanges recorded against a real ComfyUI 0.3.64 (``shared/comfyui``):

- every route exists with and without ``/api``; the client prefers ``/api`` and falls back to the
  unprefixed routes when the server answers 404 there (servers from before mid-2024);
- every ``POST /prompt`` carries this client's ``client_id`` and a fresh canonical lowercase uuid4
  ``prompt_id`` (re-using an id makes ComfyUI overwrite that id's history, so the client refuses to);
- completion comes from the websocket (``executing`` with ``node: null`` for our prompt id, or
  ``execution_success`` / ``execution_error`` / ``execution_interrupted``). ``/history/{id}`` is polled
  when the socket is down or refused, and also now and then while it is up, because a socket can go
  silent without closing (a second connection with the same clientId silences the first);
- ``/history/{id}`` is ``{}`` while queued or running, and ``{}`` forever for a prompt deleted from the
  queue: such a prompt is reported as ``lost`` once it is in neither the queue nor the history;
- an identical resubmission is a full cache hit: ``execution_cached`` lists every node and the
  output node reports the OLD file name; :attr:`PromptResult.cache_hit` says so;
- no ``Origin`` header is ever sent (ComfyUI answers 403 when Origin and Host differ).

The client is synchronous and thread-safe: a background thread reads the websocket, any number of
prompts may be in flight, and :meth:`ComfyUIClient.as_completed` waits for several at once.
Nothing here prints; ``on_event`` receives every frame about our prompts (progress reporting).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx

from sdeval.core.errors import SdevalError

__all__ = [
    "ComfyUIClient", "PromptResult", "OutputRef",
    "ComfyUIError", "ComfyUIConnectionError", "ComfyUITimeoutError", "ComfyUIHTTPError",
    "ComfyUIValidationError", "ComfyUIExecutionError", "ComfyUIInterruptedError",
    "ComfyUIPromptLostError", "ComfyUIProtocolError",
    "format_node_errors",
]

DEFAULT_URL = "http://127.0.0.1:8188"

#: statuses a finished prompt can have
STATUSES = ("success", "error", "interrupted", "cancelled", "lost")


# --------------------------------------------------------------------------------------------- errors

class ComfyUIError(SdevalError):
    """Something went wrong talking to ComfyUI or running a prompt there."""


class ComfyUIConnectionError(ComfyUIError):
    """The server cannot be reached (refused, unresolvable, connect timeout), after all retries."""


class ComfyUITimeoutError(ComfyUIError):
    """A request got no answer in time, or a prompt did not finish within the wait timeout."""


class ComfyUIProtocolError(ComfyUIError):
    """The server answered something that is not what ComfyUI answers (not JSON, no API here...)."""


class ComfyUIHTTPError(ComfyUIError):
    """An unexpected HTTP status. ``status``, ``method``, ``route`` and ``body`` (a text snippet)."""

    def __init__(self, message: str, *, status: int, method: str, route: str, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.route = route
        self.body = body


class ComfyUIValidationError(ComfyUIHTTPError):
    """``POST /prompt`` answered 400: the graph was rejected before anything ran.

    ``error_type`` is ComfyUI's type (``prompt_outputs_failed_validation``, ``invalid_prompt``,
    ``prompt_no_outputs``, ``no_prompt``) or None for old servers that send the error as a string;
    ``node_errors`` is the raw mapping; ``problems`` one readable line per node problem.
    """

    def __init__(self, message: str, *, error: Any, node_errors: Any, problems: tuple[str, ...],
                 body: str = "") -> None:
        super().__init__(message, status=400, method="POST", route="/prompt", body=body)
        self.error = error
        self.error_type = error.get("type") if isinstance(error, Mapping) else None
        self.node_errors = node_errors
        self.problems = problems


class _PromptFailure(ComfyUIError):
    def __init__(self, message: str, result: PromptResult) -> None:
        super().__init__(message)
        self.result = result
        self.prompt_id = result.prompt_id


class ComfyUIExecutionError(_PromptFailure):
    """A node raised while the prompt ran (``execution_error``). ``result.error_info`` has the details."""

    @property
    def node_id(self) -> str | None:
        return (self.result.error_info or {}).get("node_id")

    @property
    def node_type(self) -> str | None:
        return (self.result.error_info or {}).get("node_type")

    @property
    def exception_type(self) -> str | None:
        return (self.result.error_info or {}).get("exception_type")

    @property
    def exception_message(self) -> str | None:
        return (self.result.error_info or {}).get("exception_message")


class ComfyUIInterruptedError(_PromptFailure):
    """The prompt was interrupted while running, or cancelled (deleted) while queued."""


class ComfyUIPromptLostError(_PromptFailure):
    """The prompt is in neither the queue nor the history (deleted by someone, or the server restarted)."""


class _Ambiguous(Exception):
    """A non-idempotent request may or may not have reached the server (timeout, dropped connection)."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(str(exc))
        self.exc = exc


# --------------------------------------------------------------------------------------------- results

class OutputRef(NamedTuple):
    """One file a node reported: what ``GET /view`` needs to fetch it."""

    node_id: str
    filename: str
    subfolder: str
    type: str


@dataclass(frozen=True)
class PromptResult:
    """What became of one prompt.

    ``status``: ``success``, ``error`` (a node raised), ``interrupted``, ``cancelled`` (deleted while
    queued by :meth:`ComfyUIClient.cancel`) or ``lost``. ``outputs`` lists every file the output
    nodes reported, in node order; ``messages`` the ``execution_*`` messages as ComfyUI's history keeps
    them (``(type, data)``); ``seconds`` runs from submission (or from the start of waiting, for a
    prompt this client did not submit) to completion. ``via`` says whether completion was seen on the
    websocket or found in ``/history``.
    """

    prompt_id: str
    status: str
    outputs: tuple[OutputRef, ...] = ()
    messages: tuple[tuple[str, Mapping[str, Any]], ...] = field(default=(), hash=False)
    seconds: float = 0.0
    cached_nodes: tuple[str, ...] = ()
    error: str | None = None
    error_info: Mapping[str, Any] | None = field(default=None, hash=False)
    warnings: tuple[str, ...] = ()
    #: the raw ``output`` of every output node (``images``, ``text``...)
    node_outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    via: str = "websocket"

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def fresh_outputs(self) -> tuple[OutputRef, ...]:
        """Outputs written by this run: those of output nodes that were not served from the cache."""
        cached = set(self.cached_nodes)
        return tuple(o for o in self.outputs if o.node_id not in cached)

    @property
    def cache_hit(self) -> bool:
        """True when the server reported outputs but wrote no new file: every output node was cached.

        ComfyUI does this for a graph identical to one it already ran (extra_pnginfo does not count):
        the reported file names are the OLD ones. A retry must change an input (seed, prompt).
        """
        return bool(self.outputs) and not self.fresh_outputs


# --------------------------------------------------------------------------------------------- messages

_NODE_ID_RE = re.compile(r"Node ID '#([^']+)'")
_INPUT_NAME_TYPES = {"value_bigger_than_max", "value_smaller_than_min", "required_input_missing",
                     "bad_linked_input", "value_not_in_list"}


def _class_of(graph: Mapping[str, Any] | None, node_id: str) -> str | None:
    node = graph.get(str(node_id)) if isinstance(graph, Mapping) else None
    if isinstance(node, Mapping):
        ct = node.get("class_type")
        return ct if isinstance(ct, str) else None
    return None


def _node_label(node_id: Any, class_type: str | None) -> str:
    return f"node {node_id} ({class_type or 'unknown class'})"


def _missing_link_hint(graph: Mapping[str, Any] | None, node_id: str, missing: str) -> str | None:
    """The input of ``node_id`` whose link points at node ``missing`` (absent from the graph)."""
    node = graph.get(str(node_id)) if isinstance(graph, Mapping) else None
    inputs = node.get("inputs") if isinstance(node, Mapping) else None
    if isinstance(inputs, Mapping):
        for name, val in inputs.items():
            if isinstance(val, list) and val and str(val[0]) == missing:
                return str(name)
    return None


def _describe_problem(node_id: str, class_type: str | None, err: Any,
                      graph: Mapping[str, Any] | None) -> str:
    label = _node_label(node_id, class_type)
    if not isinstance(err, Mapping):
        return f"{label}: {err}"
    etype = err.get("type")
    message = str(err.get("message") or etype or "invalid")
    raw_details = err.get("details")
    details = str(raw_details) if raw_details not in (None, "") else ""
    raw_extra = err.get("extra_info")
    extra: Mapping[str, Any] = raw_extra if isinstance(raw_extra, Mapping) else {}
    input_name = extra.get("input_name")
    if not input_name and etype in _INPUT_NAME_TYPES and re.fullmatch(r"[\w.]+", details or "-"):
        input_name = details
    hint = ""
    if etype == "exception_during_validation" and extra.get("exception_type") == "KeyError":
        missing = details.strip("'\"")
        linked = _missing_link_hint(graph, node_id, missing)
        if linked:
            input_name = input_name or linked
            hint = f" (input links to node {missing}, which is not in the graph)"
    text = label + (f", input '{input_name}'" if input_name else "") + f": {message}"
    if details and details != input_name:
        text += f": {details}"
    exc_type = extra.get("exception_type")
    if isinstance(exc_type, str) and exc_type not in text:
        text += f" ({exc_type})"
    text += hint
    if etype:
        text += f" [{etype}]"
    return text


def format_node_errors(node_errors: Any, graph: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """One readable line per problem in ComfyUI's ``node_errors`` (a mapping, or a list on old servers)."""
    lines: list[str] = []
    if isinstance(node_errors, Mapping):
        items = list(node_errors.items())
    elif isinstance(node_errors, list):
        items = [(e.get("node_id", "?"), e) if isinstance(e, Mapping) else ("?", e) for e in node_errors]
    else:
        return ()
    for node_id, entry in items:
        node_id = str(node_id)
        if isinstance(entry, Mapping):
            class_type = entry.get("class_type") or _class_of(graph, node_id)
            errors = entry.get("errors")
            if not isinstance(errors, list) or not errors:
                errors = [entry.get("message") or "invalid"]
        else:
            class_type, errors = _class_of(graph, node_id), [entry]
        lines.extend(_describe_problem(node_id, class_type, e, graph) for e in errors)
    return tuple(lines)


def _validation_message(error: Any, node_errors: Any, graph: Mapping[str, Any] | None) -> tuple[str, tuple[str, ...]]:
    problems = list(format_node_errors(node_errors, graph))
    if isinstance(error, Mapping):
        etype = error.get("type")
        message = str(error.get("message") or etype or "invalid prompt")
        details = str(error.get("details") or "")
    else:
        etype, message, details = None, str(error or "invalid prompt"), ""
    if not problems:
        # errors about one node but without node_errors (unknown / missing class_type): name the node
        m = _NODE_ID_RE.search(details) or _NODE_ID_RE.search(message)
        if m:
            nid = m.group(1)
            ct = _class_of(graph, nid)
            if ct is None and isinstance(graph, Mapping) and isinstance(graph.get(nid), Mapping):
                ct = "no class_type"
            text = f"{_node_label(nid, ct)}: {message}"
        else:
            text = message + (f": {details}" if details and details != message else "")
        if etype:
            text += f" [{etype}]"
        problems = [text]
        head = "ComfyUI rejected the prompt"
    else:
        head = f"ComfyUI rejected the prompt ({message})"
    return f"{head}: " + "; ".join(problems), tuple(problems)


def _execution_error_message(prompt_id: str, data: Mapping[str, Any]) -> str:
    emsg = str(data.get("exception_message") or "").strip()
    etype = data.get("exception_type") or "an exception"
    label = _node_label(data.get("node_id", "?"), data.get("node_type"))
    return f"ComfyUI failed to run prompt {prompt_id}: {label} raised {etype}: {emsg}"


def _interrupted_message(prompt_id: str, data: Mapping[str, Any] | None) -> str:
    if data and data.get("node_id") is not None:
        return (f"prompt {prompt_id} was interrupted at "
                f"{_node_label(data.get('node_id'), data.get('node_type'))}")
    return f"prompt {prompt_id} was interrupted"


def _check_graph(graph: Any) -> None:
    if not isinstance(graph, Mapping) or not graph:
        raise ComfyUIError("a ComfyUI graph must be a non-empty mapping of node id -> "
                           "{'class_type': ..., 'inputs': {...}} (API format)")
    for nid, node in graph.items():
        if not isinstance(node, Mapping):
            raise ComfyUIError(f"node {nid} of the graph is not a mapping; is this a UI workflow "
                               "rather than an API-format graph?")


def _check_prompt_id(prompt_id: str) -> None:
    try:
        canonical = str(uuid.UUID(prompt_id))
    except (ValueError, TypeError, AttributeError):
        canonical = None
    if canonical != prompt_id:
        raise ValueError(f"prompt_id must be a canonical lowercase UUID, got {prompt_id!r}")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------- state

@dataclass
class _PromptState:
    prompt_id: str
    graph: Mapping[str, Any] | None
    started: float
    number: int | None = None
    warnings: tuple[str, ...] = ()
    outputs: list[OutputRef] = field(default_factory=list)
    node_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    messages: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    last_node: str | None = None
    progress: tuple[Any, Any] | None = None
    status: str | None = None
    error: str | None = None
    error_info: dict[str, Any] | None = None
    via: str | None = None
    finished: float | None = None
    missing_polls: int = 0
    cancel_requested: bool = False
    submitted_here: bool = True
    epoch: int = 0
    finish_epoch: int = 0


_EXEC_MESSAGES = {"execution_start", "execution_cached", "execution_success", "execution_error",
                  "execution_interrupted"}


def _refs_from_output(node_id: str, output: Mapping[str, Any]) -> list[OutputRef]:
    refs: list[OutputRef] = []
    for value in output.values():
        if isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping) and isinstance(item.get("filename"), str):
                    refs.append(OutputRef(str(node_id), item["filename"], str(item.get("subfolder") or ""),
                                          str(item.get("type") or "output")))
    return refs


# --------------------------------------------------------------------------------------------- client

class ComfyUIClient:
    """A client for one ComfyUI server.

    ``timeout``: seconds per HTTP request (``connect_timeout`` for connecting); ``retries``: extra
    attempts after a connection error, a timeout or a 5xx (never after a 4xx), sleeping
    ``backoff * 2**n`` seconds (at most ``backoff_max``) in between; ``wait_timeout``: default for
    :meth:`wait`. ``poll_interval``: seconds between ``/history`` polls while the websocket is down;
    ``safety_poll_interval``: while it is up. ``use_websocket=False`` relies on polling alone.
    ``on_event(type, data)`` is called (from the websocket thread) for every frame about our prompts.
    """

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 30.0, connect_timeout: float = 5.0,
                 retries: int = 3, backoff: float = 0.5, backoff_max: float = 8.0,
                 wait_timeout: float = 600.0, poll_interval: float = 1.0, safety_poll_interval: float = 10.0,
                 use_websocket: bool = True, ws_open_timeout: float = 5.0, prefer_api: bool = True,
                 client_id: str | None = None,
                 on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
                 trust_env: bool | None = None) -> None:
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL for ComfyUI: {url!r}")
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.wait_timeout = float(wait_timeout)
        self.poll_interval = float(poll_interval)
        self.safety_poll_interval = float(safety_poll_interval)
        self.use_websocket = use_websocket
        self.ws_open_timeout = float(ws_open_timeout)
        self.prefer_api = prefer_api
        self.client_id = client_id or uuid.uuid4().hex
        self.on_event = on_event
        loopback = _is_loopback(parts.hostname)
        # environment proxies must not capture a loopback server
        self._trust_env = (not loopback) if trust_env is None else trust_env
        self._http = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                                  trust_env=self._trust_env, follow_redirects=False,
                                  headers={"User-Agent": "sdeval-comfyui-client"})
        self._sleep: Callable[[float], None] = time.sleep
        self._prefix: str | None = None if prefer_api else ""
        self._prefix_lock = threading.Lock()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._states: dict[str, _PromptState] = {}
        self._orphans: OrderedDict[str, list[tuple[str, dict[str, Any]]]] = OrderedDict()
        #: bumped whenever frames may have been missed (socket (re)connected or lost, old-style completion):
        #: waiters whose prompts predate the bump poll /history at once
        self._epoch = 0
        self._closing = threading.Event()
        self._ws_thread: threading.Thread | None = None
        self._ws: Any = None
        self._ws_up = threading.Event()
        self._ws_tried = threading.Event()
        self.ws_last_error: str | None = None

    # ---- lifecycle

    def __enter__(self) -> ComfyUIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the websocket thread and close connections. Prompts keep running on the server."""
        self._closing.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):  # closing a dead socket
                ws.close()
        if self._ws_thread is not None and self._ws_thread is not threading.current_thread():
            self._ws_thread.join(timeout=5)
        self._http.close()

    @property
    def websocket_connected(self) -> bool:
        return self._ws_up.is_set()

    # ---- HTTP plumbing

    def _route_prefix(self) -> str:
        if self._prefix is not None:
            return self._prefix
        with self._prefix_lock:
            if self._prefix is None:
                resp = self._send("GET", "/api/prompt")
                if resp.status_code == 404:
                    old = self._send("GET", "/prompt")
                    if old.status_code == 404:
                        raise ComfyUIProtocolError(
                            f"no ComfyUI API at {self.url}: GET /api/prompt and GET /prompt both answered 404")
                    self._raise_for_status(old, "GET", "/prompt")
                    self._prefix = ""
                else:
                    self._raise_for_status(resp, "GET", "/api/prompt")
                    self._prefix = "/api"
        return self._prefix

    def _send(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              content: bytes | None = None, timeout: float | None = None,
              idempotent: bool = True) -> httpx.Response:
        """One request with bounded retries for connection errors, timeouts and 5xx answers.

        With ``idempotent=False`` only failures that certainly did not reach the server (refused,
        connect timeout) are retried here; the others raise :class:`_Ambiguous` for the caller to check.
        """
        attempts = self.retries + 1
        t0 = time.monotonic()
        last_exc: Exception | None = None
        resp: httpx.Response | None = None
        headers = {"Content-Type": "application/json"} if content is not None else None
        kw: dict[str, Any] = {}
        if timeout is not None:
            kw["timeout"] = httpx.Timeout(timeout, connect=min(timeout, self.connect_timeout))
        for attempt in range(attempts):
            if attempt:
                self._sleep(min(self.backoff_max, self.backoff * (2 ** (attempt - 1))))
            try:
                resp = self._http.request(method, self.url + path, params=params, content=content,
                                          headers=headers, **kw)
            except httpx.TransportError as exc:
                if not idempotent and not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                    raise _Ambiguous(exc) from exc
                last_exc, resp = exc, None
                continue
            if resp.status_code >= 500:
                last_exc = None
                continue
            return resp
        elapsed = time.monotonic() - t0
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''} over {elapsed:.1f}s"
        if resp is not None:
            return resp  # a 5xx after all retries: the caller reports it with its body
        if isinstance(last_exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            reason = str(last_exc) or type(last_exc).__name__
            raise ComfyUIConnectionError(
                f"cannot reach ComfyUI at {self.url}: {reason} ({tries}). Is the server running and "
                f"listening there? Start it (python main.py --listen 127.0.0.1 --port 8188) or pass its URL "
                f"(--comfy-url).") from last_exc
        if isinstance(last_exc, httpx.TimeoutException):
            limit = timeout if timeout is not None else self.timeout
            raise ComfyUITimeoutError(
                f"ComfyUI at {self.url} did not answer {method} {path} within {limit:g}s ({tries})") from last_exc
        raise ComfyUIConnectionError(
            f"cannot reach ComfyUI at {self.url}: {type(last_exc).__name__}: {last_exc} ({tries})") from last_exc

    def _request(self, method: str, route: str, *, json_body: Any = None,
                 params: Mapping[str, Any] | None = None, timeout: float | None = None,
                 idempotent: bool = True) -> httpx.Response:
        content = None
        if json_body is not None:
            try:
                content = json.dumps(json_body).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise ComfyUIError(f"cannot send {route}: the body is not JSON-serialisable ({exc})") from exc
        return self._send(method, self._route_prefix() + route, params=params, content=content, timeout=timeout,
                          idempotent=idempotent)

    def _raise_for_status(self, resp: httpx.Response, method: str, route: str) -> None:
        if 200 <= resp.status_code < 300:
            return
        body = _snippet(resp.text or "")
        status = resp.status_code
        msg = f"ComfyUI at {self.url} answered {status} {resp.reason_phrase} to {method} {route}"
        if status == 403:
            msg += (" (ComfyUI refuses requests whose Origin header does not match the Host header; "
                    "a proxy in between may be adding one)")
        if body:
            msg += f": {body}"
        if status >= 500:
            msg += f" (after {self.retries + 1} attempts)"
        raise ComfyUIHTTPError(msg, status=status, method=method, route=route, body=body)

    def _json(self, resp: httpx.Response, method: str, route: str) -> Any:
        self._raise_for_status(resp, method, route)
        try:
            return resp.json()
        except ValueError as exc:
            raise ComfyUIProtocolError(f"ComfyUI at {self.url} answered {method} {route} with non-JSON: "
                                       f"{_snippet(resp.text or '', 120)!r}") from exc

    def _get_json(self, route: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._json(self._request("GET", route, params=params), "GET", route)

    def _post(self, route: str, body: Any = None) -> httpx.Response:
        resp = self._request("POST", route, json_body=body)
        self._raise_for_status(resp, "POST", route)
        return resp

    # ---- plain routes

    def system_stats(self) -> dict[str, Any]:
        """``GET /system_stats``: versions, devices and memory."""
        return self._get_json("/system_stats")

    def server_version(self) -> str | None:
        """The ComfyUI version (``system.comfyui_version``), or None for servers that do not report it."""
        system = self.system_stats().get("system") or {}
        version = system.get("comfyui_version")
        return str(version) if version else None

    def queue(self) -> dict[str, Any]:
        """``GET /queue``: ``{"queue_running": [...], "queue_pending": [...]}``."""
        return self._get_json("/queue")

    def history(self, prompt_id: str | None = None, *, max_items: int | None = None) -> dict[str, Any]:
        """``GET /history/{id}`` (``{}`` until finished) or ``GET /history``."""
        if prompt_id is not None:
            return self._get_json(f"/history/{prompt_id}")
        return self._get_json("/history", {"max_items": max_items} if max_items else None)

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """``GET /object_info[/{class}]`` (``{}`` for an unknown class)."""
        return self._get_json(f"/object_info/{node_class}" if node_class else "/object_info")

    def interrupt(self, prompt_id: str | None = None) -> None:
        """``POST /interrupt``. With a prompt id only that prompt is stopped, if it is the one running
        (servers before targeted interrupts stop whatever runs: prefer :meth:`cancel`). Without one,
        whatever is running is stopped, whoever submitted it."""
        self._post("/interrupt", {"prompt_id": prompt_id} if prompt_id else None)

    def free(self, *, free_memory: bool = True, unload_models: bool = False) -> None:
        """``POST /free``: also empties ComfyUI's node cache, so an identical graph runs again."""
        self._post("/free", {"free_memory": free_memory, "unload_models": unload_models})

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:  # noqa: A002
        """``GET /view``: the bytes of one file the server wrote."""
        params = {"filename": filename, "subfolder": subfolder, "type": type}
        resp = self._request("GET", "/view", params=params)
        if resp.status_code == 404:
            where = "/".join(p for p in (type, subfolder, filename) if p)
            raise ComfyUIHTTPError(f"ComfyUI at {self.url} has no file {where} (GET /view answered 404)",
                                   status=404, method="GET", route="/view")
        self._raise_for_status(resp, "GET", "/view")
        return resp.content

    def fetch_outputs(self, result: PromptResult, *, types: Iterable[str] | None = None,
                      only_fresh: bool = False) -> list[tuple[str, bytes]]:
        """Download a result's files: ``[(filename, bytes), ...]`` in output order.

        ``types`` keeps only those output types (``output``, ``temp``); ``only_fresh`` skips files of
        cached output nodes (written by an earlier run). File names are reduced to their last path part.
        """
        keep = set(types) if types is not None else None
        refs = result.fresh_outputs if only_fresh else result.outputs
        files: list[tuple[str, bytes]] = []
        for ref in refs:
            if keep is not None and ref.type not in keep:
                continue
            name = PurePosixPath(ref.filename.replace("\\", "/")).name
            files.append((name, self.view(ref.filename, ref.subfolder, ref.type)))
        return files

    # ---- submitting

    def submit(self, graph: Mapping[str, Any], *, extra_pnginfo: Mapping[str, Any] | None = None,
               prompt_id: str | None = None, front: bool = False) -> str:
        """Queue an API-format graph; return its prompt id (a fresh lowercase uuid4 unless given).

        ``extra_pnginfo`` is written by SaveImage into the PNG beside ``prompt`` (e.g. ``workflow``).
        Raises :class:`ComfyUIValidationError` when ComfyUI rejects the graph (400), naming the node,
        its class and the input. A 200 with ``node_errors`` (some outputs invalid, the valid ones run)
        ends up in :attr:`PromptResult.warnings`.
        """
        _check_graph(graph)
        pid = prompt_id if prompt_id is not None else str(uuid.uuid4())
        _check_prompt_id(pid)
        self._route_prefix()  # fails fast, and clearly, when the server is down
        if self.use_websocket:
            self._ensure_ws()
        with self._lock:
            if pid in self._states:
                raise ComfyUIError(f"prompt_id {pid} was already submitted by this client; ComfyUI would "
                                   "overwrite its history")
            self._states[pid] = st = _PromptState(pid, graph, time.monotonic(), epoch=self._epoch)
            self._replay_orphans(pid)
        body: dict[str, Any] = {"prompt": graph, "client_id": self.client_id, "prompt_id": pid}
        if extra_pnginfo:
            body["extra_data"] = {"extra_pnginfo": dict(extra_pnginfo)}
        if front:
            body["front"] = True
        try:
            resp = self._post_prompt(pid, body)
        except BaseException:
            self._drop_state(pid)
            raise
        if resp is None:  # sent, answer lost, but the server has it
            return pid
        if resp.status_code != 200:
            self._drop_state(pid)
            if resp.status_code == 400:
                raise self._validation_error(resp, graph)
            self._raise_for_status(resp, "POST", "/prompt")
        data = self._json(resp, "POST", "/prompt")
        server_pid = str(data.get("prompt_id") or pid)
        with self._lock:
            st.number = data.get("number")
            st.warnings = format_node_errors(data.get("node_errors"), graph)
            if server_pid != pid:  # an old server that ignores our prompt_id
                self._states.pop(pid, None)
                st.prompt_id = server_pid
                self._states[server_pid] = st
                self._replay_orphans(server_pid)
        return server_pid

    def _post_prompt(self, pid: str, body: dict[str, Any]) -> httpx.Response | None:
        """POST /prompt. A resend after a timeout or dropped connection happens only when the server
        does not know the prompt id: a duplicate would run again as a cache hit and overwrite the
        history of the first run. None: the answer was lost but the prompt is queued or done."""
        for attempt in range(self.retries + 1):
            try:
                return self._request("POST", "/prompt", json_body=body, idempotent=False)
            except _Ambiguous as amb:
                if self._server_knows(pid):
                    return None
                if attempt == self.retries:
                    limit = f"{self.timeout:g}s"
                    if isinstance(amb.exc, httpx.TimeoutException):
                        raise ComfyUITimeoutError(f"ComfyUI at {self.url} did not answer POST /prompt within "
                                                  f"{limit} ({attempt + 1} attempts)") from amb.exc
                    raise ComfyUIConnectionError(f"cannot reach ComfyUI at {self.url}: POST /prompt failed: "
                                                 f"{type(amb.exc).__name__}: {amb.exc} ({attempt + 1} attempts)"
                                                 ) from amb.exc
                self._sleep(min(self.backoff_max, self.backoff * (2 ** attempt)))
        raise AssertionError("unreachable")  # pragma: no cover

    def _server_knows(self, pid: str) -> bool:
        q = self.queue()
        ids = {str(i[1]) for key in ("queue_running", "queue_pending") for i in q.get(key) or []
               if isinstance(i, list) and len(i) > 1}
        return pid in ids or bool(self.history(pid).get(pid))

    def _validation_error(self, resp: httpx.Response, graph: Mapping[str, Any]) -> ComfyUIValidationError:
        text = resp.text or ""
        try:
            data = resp.json()
        except ValueError:
            data = None
        if isinstance(data, Mapping):
            error, node_errors = data.get("error"), data.get("node_errors")
        else:
            error, node_errors = _snippet(text) or "400 Bad Request", None
        message, problems = _validation_message(error, node_errors, graph)
        return ComfyUIValidationError(message, error=error, node_errors=node_errors, problems=problems,
                                      body=_snippet(text))

    def _drop_state(self, pid: str) -> None:
        with self._lock:
            self._states.pop(pid, None)

    # ---- waiting

    def wait(self, prompt_id: str, timeout: float | None = None, *, raise_on_error: bool = True) -> PromptResult:
        """Block until the prompt finished; return its :class:`PromptResult`.

        Raises :class:`ComfyUIExecutionError`, :class:`ComfyUIInterruptedError` or
        :class:`ComfyUIPromptLostError` for a prompt that did not succeed (each carries ``.result``)
        unless ``raise_on_error`` is False, and :class:`ComfyUITimeoutError` after ``timeout`` seconds
        (default ``wait_timeout``; the prompt is left running: :meth:`cancel` it if it should stop).
        Works for prompt ids this client did not submit too (found through ``/history``).
        """
        for result in self.as_completed([prompt_id], timeout, raise_on_error=raise_on_error):
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def as_completed(self, prompt_ids: Iterable[str], timeout: float | None = None, *,
                     raise_on_error: bool = False) -> Iterator[PromptResult]:
        """Yield each prompt's result as it finishes (failures as results unless ``raise_on_error``).

        Raises :class:`ComfyUITimeoutError` when ``timeout`` seconds (for all of them together) pass first.
        """
        ids = list(dict.fromkeys(prompt_ids))
        now = time.monotonic()
        with self._lock:
            for pid in ids:
                if pid not in self._states:
                    self._states[pid] = _PromptState(pid, None, now, submitted_here=False, epoch=self._epoch)
                    self._replay_orphans(pid)
        limit = self.wait_timeout if timeout is None else float(timeout)
        deadline = now + limit
        pending = list(ids)
        with self._lock:
            # frames only reach us for prompts this client submitted
            ws_on = (self.use_websocket and self._ws_thread is not None
                     and all(self._states[p].submitted_here for p in ids))
            seen_epoch = min(self._states[p].epoch for p in ids) if ids else self._epoch
        next_poll = now + self._interval(pending, ws_on) if ws_on and self._ws_up.is_set() else now
        while pending:
            with self._lock:
                done = [p for p in pending if self._states[p].status is not None]
            for pid in done:
                pending.remove(pid)
                result = self._result(pid)
                if raise_on_error:
                    self._raise_for_result(result)
                yield result
            if not pending:
                return
            now = time.monotonic()
            if now >= deadline:
                raise ComfyUITimeoutError(self._timeout_message(pending, limit))
            if self._epoch != seen_epoch or now >= next_poll:
                seen_epoch = self._epoch
                self._poll(pending)
                next_poll = time.monotonic() + self._interval(pending, ws_on)
                continue
            with self._cond:
                if any(self._states[p].status is not None for p in pending) or self._epoch != seen_epoch:
                    continue
                next_poll = min(next_poll, now + self._interval(pending, ws_on))
                self._cond.wait(max(0.0, min(next_poll, deadline) - now))

    def _interval(self, pending: list[str], ws_on: bool) -> float:
        """Seconds until the next /history poll: short unless the websocket is up and will tell us."""
        if not ws_on or not self._ws_up.is_set():
            return self.poll_interval
        with self._lock:
            if any(self._states[p].cancel_requested for p in pending):
                return self.poll_interval
        return self.safety_poll_interval

    def _timeout_message(self, pending: list[str], limit: float) -> str:
        with self._lock:
            st = self._states[pending[0]]
            where = "not started yet (still queued?)"
            if st.last_node is not None:
                where = f"last seen running {_node_label(st.last_node, _class_of(st.graph, st.last_node))}"
                if st.progress:
                    where += f", step {st.progress[0]}/{st.progress[1]}"
            elif st.messages:
                where = "started"
        more = f" (and {len(pending) - 1} more)" if len(pending) > 1 else ""
        return (f"ComfyUI prompt {pending[0]}{more} did not finish within {limit:g}s: {where}. It is still "
                f"on the server; cancel it or wait longer.")

    def _raise_for_result(self, result: PromptResult) -> None:
        if result.status == "error":
            raise ComfyUIExecutionError(result.error or f"prompt {result.prompt_id} failed", result)
        if result.status in ("interrupted", "cancelled"):
            raise ComfyUIInterruptedError(result.error or f"prompt {result.prompt_id} was interrupted", result)
        if result.status == "lost":
            raise ComfyUIPromptLostError(result.error or f"prompt {result.prompt_id} was lost", result)

    def _result(self, pid: str) -> PromptResult:
        with self._lock:
            st = self._states[pid]
            # frames may be missing (no outputs reported, or the socket dropped while it ran): the
            # history, written just after execution_success, is authoritative
            needs_history = (st.status == "success" and st.via == "websocket"
                             and (not st.node_outputs or st.epoch != st.finish_epoch))
        if needs_history:
            try:
                for _ in range(20):
                    entry = self.history(pid).get(pid)
                    if entry:
                        with self._lock:
                            self._fill_from_history(st, entry)
                        break
                    self._sleep(0.05)
            except ComfyUIError:
                pass  # keep what the websocket said
        with self._lock:
            return PromptResult(
                prompt_id=st.prompt_id, status=st.status or "error", outputs=tuple(st.outputs),
                messages=tuple(st.messages),
                seconds=round(max(0.0, (st.finished or time.monotonic()) - st.started), 4),
                cached_nodes=tuple(st.cached), error=st.error, error_info=st.error_info,
                warnings=st.warnings, node_outputs={k: dict(v) for k, v in st.node_outputs.items()},
                via=st.via or "history")

    # ---- polling

    def _poll(self, pids: list[str]) -> None:
        queued: set[str] | None = None
        for pid in pids:
            with self._lock:
                st = self._states[pid]
                if st.status is not None:
                    continue
            entry = self.history(pid).get(pid)
            if entry:
                self._finish_from_history(st, entry)
                continue
            if queued is None:
                q = self.queue()
                queued = {str(item[1]) for key in ("queue_running", "queue_pending")
                          for item in q.get(key) or [] if isinstance(item, list) and len(item) > 1}
            if pid in queued:
                st.missing_polls = 0
                continue
            entry = self.history(pid).get(pid)  # it may have finished between the two requests
            if entry:
                self._finish_from_history(st, entry)
                continue
            st.missing_polls += 1
            if st.cancel_requested:
                self._finish(st, "cancelled", "history", error=f"prompt {pid} was cancelled before it ran")
            elif st.missing_polls >= 2:
                self._finish(st, "lost", "history",
                             error=f"ComfyUI prompt {pid} is neither queued, running nor in the history: it was "
                                   "deleted from the queue, or the server restarted")

    def _fill_from_history(self, st: _PromptState, entry: Mapping[str, Any]) -> None:
        outputs = entry.get("outputs") or {}
        st.outputs, st.node_outputs = [], {}
        for node_id, out in outputs.items():
            if isinstance(out, Mapping):
                st.node_outputs[str(node_id)] = dict(out)
                st.outputs.extend(_refs_from_output(str(node_id), out))
        status = entry.get("status") or {}
        msgs = [(m[0], m[1]) for m in status.get("messages") or [] if isinstance(m, list) and len(m) == 2]
        if msgs:
            st.messages = msgs
        for kind, data in msgs:
            if kind == "execution_cached" and isinstance(data, Mapping):
                st.cached = [str(n) for n in data.get("nodes") or []]

    def _finish_from_history(self, st: _PromptState, entry: Mapping[str, Any]) -> None:
        with self._lock:
            if st.status is not None:
                return
            self._fill_from_history(st, entry)
            status = entry.get("status") or {}
            status_str = status.get("status_str")
            kinds = {k: d for k, d in st.messages}
            if status_str == "error" or "execution_error" in kinds or "execution_interrupted" in kinds:
                if "execution_interrupted" in kinds:
                    data = kinds["execution_interrupted"]
                    self._finish(st, "interrupted", "history", error=_interrupted_message(st.prompt_id, data),
                                 info=data)
                else:
                    data = kinds.get("execution_error") or {}
                    msg = (_execution_error_message(st.prompt_id, data) if data
                           else f"ComfyUI reported prompt {st.prompt_id} as failed")
                    self._finish(st, "error", "history", error=msg, info=data)
            else:
                self._finish(st, "success", "history")

    def _finish(self, st: _PromptState, status: str, via: str, *, error: str | None = None,
                info: Mapping[str, Any] | None = None) -> None:
        with self._cond:
            if st.status is not None:
                return
            st.status, st.via, st.error, st.finished = status, via, error, time.monotonic()
            st.finish_epoch = self._epoch
            if info:
                st.error_info = {k: v for k, v in info.items() if k not in ("current_inputs", "current_outputs")}
            self._cond.notify_all()

    # ---- cancelling

    def cancel(self, prompt_id: str) -> str:
        """Stop one prompt: delete it from the queue if pending, interrupt it if running.

        Returns ``"dequeued"``, ``"interrupted"`` or ``"not_queued"`` (already finished or unknown).
        Never interrupts another client's running prompt.
        """
        with self._lock:
            st = self._states.get(prompt_id)
            if st is not None:
                st.cancel_requested = True
        q = self.queue()
        pending = {str(i[1]) for i in q.get("queue_pending") or [] if isinstance(i, list) and len(i) > 1}
        if prompt_id in pending:
            self._post("/queue", {"delete": [prompt_id]})
            q = self.queue()  # it may have started meanwhile
        running = {str(i[1]) for i in q.get("queue_running") or [] if isinstance(i, list) and len(i) > 1}
        if prompt_id in running:
            self.interrupt(prompt_id)
            return "interrupted"
        if prompt_id not in pending:
            return "not_queued"
        if st is not None and not self.history(prompt_id).get(prompt_id):
            self._finish(st, "cancelled", "history", error=f"prompt {prompt_id} was cancelled before it ran")
        return "dequeued"

    def cancel_all(self) -> list[str]:
        """Cancel every unfinished prompt this client submitted (for Ctrl-C). Returns their ids."""
        with self._lock:
            ids = [p for p, st in self._states.items() if st.status is None and st.submitted_here]
        for pid in ids:
            self.cancel(pid)
        return ids

    def forget(self, prompt_id: str) -> None:
        """Drop what the client keeps about a finished prompt."""
        with self._lock:
            self._states.pop(prompt_id, None)

    # ---- websocket

    def _ensure_ws(self) -> None:
        if self._ws_thread is None and not self._closing.is_set():
            with self._lock:
                if self._ws_thread is None:
                    self._ws_thread = threading.Thread(target=self._ws_main, name="sdeval-comfyui-ws",
                                                       daemon=True)
                    self._ws_thread.start()
        self._ws_tried.wait(self.ws_open_timeout)

    def _ws_urls(self) -> list[str]:
        base = "ws" + self.url[4:] if self.url.startswith("http") else self.url
        prefix = self._route_prefix()
        paths = [prefix + "/ws"] + (["/ws"] if prefix else [])
        return [f"{base}{p}?clientId={self.client_id}" for p in paths]

    def _ws_open(self) -> Any:
        """Open the socket (``/api/ws``, else ``/ws``); returns what ``connect`` returns, a context manager."""
        import inspect

        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        # no origin: ComfyUI answers 403 when Origin and Host differ
        kw: dict[str, Any] = {"open_timeout": self.ws_open_timeout, "close_timeout": 1, "max_size": 64 * 2 ** 20}
        if "proxy" in inspect.signature(connect).parameters:
            kw["proxy"] = True if self._trust_env else None
        last: Exception | None = None
        for url in self._ws_urls():
            try:
                return connect(url, **kw)
            except InvalidStatus as exc:
                last = exc
                if exc.response.status_code != 404:
                    break
        assert last is not None
        raise last

    def _ws_main(self) -> None:
        from websockets.exceptions import ConnectionClosed

        delay = 0.1
        while not self._closing.is_set():
            try:
                opened = self._ws_open()
            except Exception as exc:  # noqa: BLE001 - refused, 403, timeouts: fall back to polling
                self.ws_last_error = f"{type(exc).__name__}: {exc}"
                self._ws_tried.set()
                with self._cond:
                    self._epoch += 1
                    self._cond.notify_all()
                if self._closing.wait(delay):
                    break
                delay = min(delay * 2, 5.0)
                continue
            started = time.monotonic()
            try:
                with opened as ws:
                    self._ws = ws
                    with self._cond:
                        self._ws_up.set()
                        self._epoch += 1
                        self._cond.notify_all()
                    self._ws_tried.set()
                    while not self._closing.is_set():
                        try:
                            message = ws.recv(timeout=0.5)
                        except TimeoutError:
                            continue
                        if isinstance(message, str):
                            self._on_text(message)
            except (ConnectionClosed, OSError) as exc:
                self.ws_last_error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - keep the thread alive; polling covers us
                self.ws_last_error = f"{type(exc).__name__}: {exc}"
            finally:
                self._ws = None
                with self._cond:
                    self._ws_up.clear()
                    self._epoch += 1
                    self._cond.notify_all()
            if time.monotonic() - started < 1.0:  # accepted then dropped at once: do not hammer the server
                if self._closing.wait(delay):
                    break
                delay = min(delay * 2, 5.0)
            else:
                delay = 0.1

    def _on_text(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            return
        if not isinstance(msg, Mapping):
            return
        kind, data = msg.get("type"), msg.get("data")
        if not isinstance(kind, str) or not isinstance(data, Mapping):
            return
        pid = data.get("prompt_id")
        if pid is None:
            if kind == "executing" and data.get("node") is None:
                with self._cond:  # an old server finished something: look in the history
                    self._epoch += 1
                    self._cond.notify_all()
            return
        with self._lock:
            st = self._states.get(str(pid))
            if st is None:
                frames = self._orphans.setdefault(str(pid), [])
                if len(frames) < 512:
                    frames.append((kind, dict(data)))
                while len(self._orphans) > 256:
                    self._orphans.popitem(last=False)
                return
            self._apply(st, kind, data)
        if self.on_event is not None:
            with contextlib.suppress(Exception):  # a broken progress callback must not kill the socket
                self.on_event(kind, data)

    def _replay_orphans(self, pid: str) -> None:
        frames = self._orphans.pop(pid, None)
        if frames:
            st = self._states[pid]
            for kind, data in frames:
                self._apply(st, kind, data)

    def _apply(self, st: _PromptState, kind: str, data: Mapping[str, Any]) -> None:
        if st.status is not None:
            return
        if kind in _EXEC_MESSAGES:
            st.messages.append((kind, dict(data)))
        if kind == "execution_cached":
            st.cached = [str(n) for n in data.get("nodes") or []]
        elif kind == "executing":
            node = data.get("node")
            if node is None:
                self._finish(st, "success", "websocket")
            else:
                st.last_node, st.progress = str(node), None
        elif kind == "progress":
            st.progress = (data.get("value"), data.get("max"))
        elif kind == "executed":
            node_id = str(data.get("node"))
            output = data.get("output") or {}
            if isinstance(output, Mapping):
                merged = st.node_outputs.setdefault(node_id, {})
                for key, value in output.items():
                    if isinstance(value, list) and isinstance(merged.get(key), list):
                        merged[key] = merged[key] + value
                    else:
                        merged[key] = value
                st.outputs.extend(_refs_from_output(node_id, output))
        elif kind == "execution_success":
            self._finish(st, "success", "websocket")
        elif kind == "execution_error":
            self._finish(st, "error", "websocket", error=_execution_error_message(st.prompt_id, data), info=data)
        elif kind == "execution_interrupted":
            self._finish(st, "interrupted", "websocket", error=_interrupted_message(st.prompt_id, data),
                         info=data)
