"""ComfyUI client: submit API-format graphs, wait for them, fetch the files they saved.

Agrees with the exchanges recorded against a real ComfyUI 0.3.64 (``shared/comfyui``). This module
composes the HTTP :mod:`~sdeval.generators.comfyui.transport` (retries, ``/api`` fallback), the
prompt :mod:`~sdeval.generators.comfyui.tracking` (websocket + ``/history`` state machine) and the
:mod:`~sdeval.generators.comfyui.errors`; what it adds are ComfyUI's rules for submitting:

- every ``POST /prompt`` carries this client's ``client_id`` and a fresh canonical lowercase uuid4
  ``prompt_id`` (re-using an id makes ComfyUI overwrite that id's history, so the client refuses to);
  a ``POST /prompt`` whose answer was lost is resent only when the server does not know the id;
- an identical resubmission is a full cache hit: ``execution_cached`` lists every node and the
  output node reports the OLD file name; :attr:`PromptResult.cache_hit` says so.

The client is synchronous and thread-safe. Nothing here prints; ``on_event`` receives every frame
about our prompts (progress reporting).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx

from sdeval.core.http import RetryPolicy
from sdeval.generators.comfyui.errors import (ComfyUIConnectionError, ComfyUIError, ComfyUIHTTPError,
                                              ComfyUITimeoutError, ComfyUIValidationError, format_node_errors,
                                              snippet, validation_message)
from sdeval.generators.comfyui.tracking import PromptResult, PromptTracker
from sdeval.generators.comfyui.transport import Ambiguous, Transport

__all__ = ["ComfyUIClient", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8188"


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


class ComfyUIClient:
    """A client for one ComfyUI server.

    ``timeout``: seconds per HTTP request (``connect_timeout`` for connecting); ``retries``: extra
    attempts after a timeout, a dropped connection or a 5xx (never after a 4xx, a refused connection
    or a name that does not resolve), sleeping ``backoff * 2**n`` seconds (at most ``backoff_max``)
    in between; ``wait_timeout``: default for :meth:`wait`. ``poll_interval``: seconds between
    ``/history`` polls while the websocket is down; ``safety_poll_interval``: while it is up.
    ``use_websocket=False`` relies on polling alone. ``on_event(type, data)`` is called (from the
    websocket thread) for every frame about our prompts.
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
        self.policy = RetryPolicy(retries=max(0, int(retries)), backoff=float(backoff),
                                  backoff_max=float(backoff_max))
        self._transport = Transport(url, timeout=timeout, connect_timeout=connect_timeout, policy=self.policy,
                                    prefer_api=prefer_api, trust_env=trust_env)
        self.url = self._transport.url
        self.timeout = self._transport.timeout
        self.client_id = client_id or uuid.uuid4().hex
        self._tracker = PromptTracker(self._transport, client_id=self.client_id, wait_timeout=wait_timeout,
                                      poll_interval=poll_interval, safety_poll_interval=safety_poll_interval,
                                      use_websocket=use_websocket, ws_open_timeout=ws_open_timeout,
                                      on_event=on_event)

    # ---- lifecycle

    def __enter__(self) -> ComfyUIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the websocket thread and close connections. Prompts keep running on the server."""
        self._tracker.close()
        self._transport.close()

    @property
    def websocket_connected(self) -> bool:
        return self._tracker.websocket_connected

    @property
    def ws_last_error(self) -> str | None:
        """Why the websocket last failed or closed (None if it never did)."""
        return self._tracker.ws_last_error

    # ---- plain routes

    def system_stats(self) -> dict[str, Any]:
        """``GET /system_stats``: versions, devices and memory."""
        return self._transport.get_json("/system_stats")

    def server_version(self) -> str | None:
        """The ComfyUI version (``system.comfyui_version``), or None for servers that do not report it."""
        system = self.system_stats().get("system") or {}
        version = system.get("comfyui_version")
        return str(version) if version else None

    def queue(self) -> dict[str, Any]:
        """``GET /queue``: ``{"queue_running": [...], "queue_pending": [...]}``."""
        return self._transport.get_json("/queue")

    def history(self, prompt_id: str | None = None, *, max_items: int | None = None) -> dict[str, Any]:
        """``GET /history/{id}`` (``{}`` until finished) or ``GET /history``."""
        if prompt_id is not None:
            return self._transport.get_json(f"/history/{prompt_id}")
        return self._transport.get_json("/history", {"max_items": max_items} if max_items else None)

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """``GET /object_info[/{class}]`` (``{}`` for an unknown class)."""
        return self._transport.get_json(f"/object_info/{node_class}" if node_class else "/object_info")

    def interrupt(self, prompt_id: str | None = None) -> None:
        """``POST /interrupt``. With a prompt id only that prompt is stopped, if it is the one running
        (servers before targeted interrupts stop whatever runs: prefer :meth:`cancel`). Without one,
        whatever is running is stopped, whoever submitted it."""
        self._transport.post("/interrupt", {"prompt_id": prompt_id} if prompt_id else None)

    def free(self, *, free_memory: bool = True, unload_models: bool = False) -> None:
        """``POST /free``: also empties ComfyUI's node cache, so an identical graph runs again."""
        self._transport.post("/free", {"free_memory": free_memory, "unload_models": unload_models})

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:  # noqa: A002
        """``GET /view``: the bytes of one file the server wrote."""
        params = {"filename": filename, "subfolder": subfolder, "type": type}
        resp = self._transport.request("GET", "/view", params=params)
        if resp.status_code == 404:
            where = "/".join(p for p in (type, subfolder, filename) if p)
            raise ComfyUIHTTPError(f"ComfyUI at {self.url} has no file {where} (GET /view answered 404)",
                                   status=404, method="GET", route="/view")
        self._transport.raise_for_status(resp, "GET", "/view")
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
        self._transport.route_prefix()  # fails fast, and clearly, when the server is down
        if self._tracker.use_websocket:
            self._tracker.ensure_ws()
        self._tracker.register(pid, graph)
        body: dict[str, Any] = {"prompt": graph, "client_id": self.client_id, "prompt_id": pid}
        if extra_pnginfo:
            body["extra_data"] = {"extra_pnginfo": dict(extra_pnginfo)}
        if front:
            body["front"] = True
        try:
            resp = self._post_prompt(pid, body)
        except BaseException:
            self._tracker.drop(pid)
            raise
        if resp is None:  # sent, answer lost, but the server has it
            return pid
        if resp.status_code != 200:
            self._tracker.drop(pid)
            if resp.status_code == 400:
                raise self._validation_error(resp, graph)
            self._transport.raise_for_status(resp, "POST", "/prompt")
        data = self._transport.json(resp, "POST", "/prompt")
        server_pid = str(data.get("prompt_id") or pid)
        self._tracker.accepted(pid, number=data.get("number"), warnings=format_node_errors(data.get("node_errors"), graph),
                               server_pid=server_pid)
        return server_pid

    def _post_prompt(self, pid: str, body: dict[str, Any]) -> httpx.Response | None:
        """POST /prompt. A resend after a timeout or dropped connection happens only when the server
        does not know the prompt id: a duplicate would run again as a cache hit and overwrite the
        history of the first run. None: the answer was lost but the prompt is queued or done."""
        retries = self.policy.attempts - 1
        for attempt in range(retries + 1):
            try:
                return self._transport.request("POST", "/prompt", json_body=body, idempotent=False)
            except Ambiguous as amb:
                if self._server_knows(pid):
                    return None
                if attempt == retries:
                    if isinstance(amb.exc, httpx.TimeoutException):
                        raise ComfyUITimeoutError(f"ComfyUI at {self.url} did not answer POST /prompt within "
                                                  f"{self.timeout:g}s ({attempt + 1} attempts)") from amb.exc
                    raise ComfyUIConnectionError(f"cannot reach ComfyUI at {self.url}: POST /prompt failed: "
                                                 f"{type(amb.exc).__name__}: {amb.exc} ({attempt + 1} attempts)"
                                                 ) from amb.exc
                self._transport.sleep(min(self.policy.backoff_max, self.policy.backoff * (2 ** attempt)))
        raise AssertionError("unreachable")  # pragma: no cover

    def _server_knows(self, pid: str) -> bool:
        running, pending = self._transport.queue_ids()
        return pid in running or pid in pending or self._transport.history_entry(pid) is not None

    def _validation_error(self, resp: httpx.Response, graph: Mapping[str, Any]) -> ComfyUIValidationError:
        text = resp.text or ""
        try:
            data = resp.json()
        except ValueError:
            data = None
        if isinstance(data, Mapping):
            error, node_errors = data.get("error"), data.get("node_errors")
        else:
            error, node_errors = snippet(text) or "400 Bad Request", None
        message, problems = validation_message(error, node_errors, graph)
        return ComfyUIValidationError(message, error=error, node_errors=node_errors, problems=problems,
                                      body=snippet(text))

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
        return self._tracker.as_completed(prompt_ids, timeout, raise_on_error=raise_on_error)

    # ---- cancelling

    def cancel(self, prompt_id: str) -> str:
        """Stop one prompt: delete it from the queue if pending, interrupt it if running.

        Returns ``"dequeued"``, ``"interrupted"`` or ``"not_queued"`` (already finished or unknown).
        Never interrupts another client's running prompt.
        """
        known = self._tracker.request_cancel(prompt_id)
        running, pending = self._transport.queue_ids()
        if prompt_id in pending:
            self._transport.post("/queue", {"delete": [prompt_id]})
            running, _ = self._transport.queue_ids()  # it may have started meanwhile
        if prompt_id in running:
            self.interrupt(prompt_id)
            return "interrupted"
        if prompt_id not in pending:
            return "not_queued"
        if known and self._transport.history_entry(prompt_id) is None:
            self._tracker.finish_cancelled(prompt_id)
        return "dequeued"

    def cancel_all(self) -> list[str]:
        """Cancel every unfinished prompt this client submitted (for Ctrl-C). Returns their ids."""
        ids = self._tracker.unfinished()
        for pid in ids:
            self.cancel(pid)
        return ids

    def forget(self, prompt_id: str) -> None:
        """Drop what the client keeps about a finished prompt."""
        self._tracker.drop(prompt_id)
