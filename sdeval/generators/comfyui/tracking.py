"""Which state each prompt is in: the websocket reader and the ``/history`` polling, one state machine.

Completion comes from the websocket (``executing`` with ``node: null`` for our prompt id, or
``execution_success`` / ``execution_error`` / ``execution_interrupted``). ``/history/{id}`` is polled
when the socket is down or refused, and also now and then while it is up, because a socket can go
silent without closing (a second connection with the same clientId silences the first).
``/history/{id}`` is ``{}`` while queued or running, and ``{}`` forever for a prompt deleted from the
queue: such a prompt is reported as ``lost`` once it is in neither the queue nor the history.

Thread-safe: a background thread reads the websocket, any number of prompts may be in flight and
:meth:`PromptTracker.as_completed` waits for several at once. Frames that arrive before their
prompt is registered (the socket can be faster than the ``POST /prompt`` answer) are kept and
replayed.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sdeval.generators.comfyui.errors import (ComfyUIError, ComfyUIExecutionError, ComfyUIInterruptedError,
                                              ComfyUIPromptLostError, ComfyUITimeoutError, class_of,
                                              execution_error_message, interrupted_message, node_label)
from sdeval.generators.comfyui.transport import Transport

#: the messages that end a prompt's execution (each with a ``timestamp`` in ms)
_END_MESSAGES = ("execution_success", "execution_error", "execution_interrupted")

#: statuses a finished prompt can have
STATUSES = ("success", "error", "interrupted", "cancelled", "lost")


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

    @property
    def execution_seconds(self) -> float | None:
        """How long the server ran the prompt: from ``execution_start`` to ``execution_success`` /
        ``execution_error`` / ``execution_interrupted``, by the millisecond ``timestamp`` ComfyUI puts
        in each (websocket frames and history alike). None when the server sent no timestamps."""
        start = end = None
        for kind, data in self.messages:
            ts = data.get("timestamp") if isinstance(data, Mapping) else None
            if not isinstance(ts, (int, float)) or isinstance(ts, bool):
                continue
            if kind == "execution_start":
                start = ts
            elif kind in _END_MESSAGES:
                end = ts
        if start is None or end is None or end < start:
            return None
        return round((end - start) / 1000.0, 4)

    @property
    def queue_seconds(self) -> float | None:
        """:attr:`seconds` before the server started running it (queue wait, plus the submission's
        round trip). A difference of two durations: the server's clock need not agree with ours."""
        execution = self.execution_seconds
        return None if execution is None else round(max(0.0, self.seconds - execution), 4)



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


class PromptTracker:
    """The state of every prompt a client submitted or waits for.

    ``poll_interval``: seconds between ``/history`` polls while the websocket is down;
    ``safety_poll_interval``: while it is up. ``use_websocket=False`` relies on polling alone.
    ``on_event(type, data)`` is called (from the websocket thread) for every frame about our prompts.
    """

    def __init__(self, transport: Transport, *, client_id: str, wait_timeout: float, poll_interval: float,
                 safety_poll_interval: float, use_websocket: bool, ws_open_timeout: float,
                 on_event: Callable[[str, Mapping[str, Any]], None] | None = None) -> None:
        self._transport = transport
        self.client_id = client_id
        self.wait_timeout = float(wait_timeout)
        self.poll_interval = float(poll_interval)
        self.safety_poll_interval = float(safety_poll_interval)
        self.use_websocket = use_websocket
        self.ws_open_timeout = float(ws_open_timeout)
        self.on_event = on_event
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

    def close(self) -> None:
        """Stop the websocket thread. Prompts keep running on the server."""
        self._closing.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):  # closing a dead socket
                ws.close()
        if self._ws_thread is not None and self._ws_thread is not threading.current_thread():
            self._ws_thread.join(timeout=5)

    @property
    def websocket_connected(self) -> bool:
        return self._ws_up.is_set()

    # ---- registering

    def register(self, pid: str, graph: Mapping[str, Any]) -> None:
        """A prompt about to be posted: frames about it count from now on."""
        with self._lock:
            if pid in self._states:
                raise ComfyUIError(f"prompt_id {pid} was already submitted by this client; ComfyUI would "
                                   "overwrite its history")
            self._states[pid] = _PromptState(pid, graph, time.monotonic(), epoch=self._epoch)
            self._replay_orphans(pid)

    def accepted(self, pid: str, *, number: Any, warnings: tuple[str, ...], server_pid: str) -> None:
        """The server queued it (as ``server_pid``: an old server ignores our prompt id)."""
        with self._lock:
            st = self._states[pid]
            st.number, st.warnings = number, warnings
            if server_pid != pid:
                self._states.pop(pid, None)
                st.prompt_id = server_pid
                self._states[server_pid] = st
                self._replay_orphans(server_pid)

    def drop(self, pid: str) -> None:
        """Forget a prompt (not queued after all, or finished and read)."""
        with self._lock:
            self._states.pop(pid, None)

    def unfinished(self) -> list[str]:
        """Ids of the prompts submitted here that have not finished."""
        with self._lock:
            return [p for p, st in self._states.items() if st.status is None and st.submitted_here]

    def request_cancel(self, pid: str) -> bool:
        """Mark a prompt as being cancelled (so it ends as ``cancelled`` rather than ``lost``)."""
        with self._lock:
            st = self._states.get(pid)
            if st is not None:
                st.cancel_requested = True
            return st is not None

    def finish_cancelled(self, pid: str) -> None:
        with self._lock:
            st = self._states.get(pid)
        if st is not None:
            self._finish(st, "cancelled", "history", error=f"prompt {pid} was cancelled before it ran")

    # ---- waiting

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
                where = f"last seen running {node_label(st.last_node, class_of(st.graph, st.last_node))}"
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
                    entry = self._transport.history_entry(pid)
                    if entry:
                        with self._lock:
                            self._fill_from_history(st, entry)
                        break
                    self._transport.sleep(0.05)
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
            entry = self._transport.history_entry(pid)
            if entry:
                self._finish_from_history(st, entry)
                continue
            if queued is None:
                running, waiting = self._transport.queue_ids()
                queued = running | waiting
            if pid in queued:
                st.missing_polls = 0
                continue
            entry = self._transport.history_entry(pid)  # it may have finished between the two requests
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
                    self._finish(st, "interrupted", "history", error=interrupted_message(st.prompt_id, data),
                                 info=data)
                else:
                    data = kinds.get("execution_error") or {}
                    msg = (execution_error_message(st.prompt_id, data) if data
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

    # ---- websocket

    def ensure_ws(self) -> None:
        if self._ws_thread is None and not self._closing.is_set():
            with self._lock:
                if self._ws_thread is None:
                    self._ws_thread = threading.Thread(target=self._ws_main, name="sdeval-comfyui-ws",
                                                       daemon=True)
                    self._ws_thread.start()
        self._ws_tried.wait(self.ws_open_timeout)

    def _ws_urls(self) -> list[str]:
        base = "ws" + self._transport.url[4:] if self._transport.url.startswith("http") else self._transport.url
        prefix = self._transport.route_prefix()
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
            kw["proxy"] = True if self._transport.trust_env else None
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
            self._finish(st, "error", "websocket", error=execution_error_message(st.prompt_id, data), info=data)
        elif kind == "execution_interrupted":
            self._finish(st, "interrupted", "websocket", error=interrupted_message(st.prompt_id, data),
                         info=data)
