"""ComfyUI's errors, and how its validation and execution errors are told to a person.

Validation errors (``POST /prompt`` answering 400) name the node, its class and the input;
execution errors the node that raised and the exception. The wording follows what ComfyUI
0.3.64 sends (``shared/comfyui``), and old servers that send the error as a plain string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sdeval.core.errors import SdevalError

if TYPE_CHECKING:
    from sdeval.generators.comfyui.tracking import PromptResult

__all__ = [
    "ComfyUIError", "ComfyUIConnectionError", "ComfyUITimeoutError", "ComfyUIHTTPError",
    "ComfyUIValidationError", "ComfyUIExecutionError", "ComfyUIInterruptedError",
    "ComfyUIPromptLostError", "ComfyUIProtocolError", "format_node_errors",
]


class ComfyUIError(SdevalError):
    """Something went wrong talking to ComfyUI or running a prompt there."""


class ComfyUIConnectionError(ComfyUIError):
    """The server cannot be reached: refused or unresolvable (at once), or connect timeouts and
    dropped connections after the retries."""


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
    def __init__(self, message: str, result: "PromptResult") -> None:
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


# --------------------------------------------------------------------------------------------- messages

_NODE_ID_RE = re.compile(r"Node ID '#([^']+)'")
_INPUT_NAME_TYPES = {"value_bigger_than_max", "value_smaller_than_min", "required_input_missing",
                     "bad_linked_input", "value_not_in_list"}


def class_of(graph: Mapping[str, Any] | None, node_id: str) -> str | None:
    node = graph.get(str(node_id)) if isinstance(graph, Mapping) else None
    if isinstance(node, Mapping):
        ct = node.get("class_type")
        return ct if isinstance(ct, str) else None
    return None


def node_label(node_id: Any, class_type: str | None) -> str:
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
    label = node_label(node_id, class_type)
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
            class_type = entry.get("class_type") or class_of(graph, node_id)
            errors = entry.get("errors")
            if not isinstance(errors, list) or not errors:
                errors = [entry.get("message") or "invalid"]
        else:
            class_type, errors = class_of(graph, node_id), [entry]
        lines.extend(_describe_problem(node_id, class_type, e, graph) for e in errors)
    return tuple(lines)


def validation_message(error: Any, node_errors: Any, graph: Mapping[str, Any] | None) -> tuple[str, tuple[str, ...]]:
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
            ct = class_of(graph, nid)
            if ct is None and isinstance(graph, Mapping) and isinstance(graph.get(nid), Mapping):
                ct = "no class_type"
            text = f"{node_label(nid, ct)}: {message}"
        else:
            text = message + (f": {details}" if details and details != message else "")
        if etype:
            text += f" [{etype}]"
        problems = [text]
        head = "ComfyUI rejected the prompt"
    else:
        head = f"ComfyUI rejected the prompt ({message})"
    return f"{head}: " + "; ".join(problems), tuple(problems)


def execution_error_message(prompt_id: str, data: Mapping[str, Any]) -> str:
    emsg = str(data.get("exception_message") or "").strip()
    etype = data.get("exception_type") or "an exception"
    label = node_label(data.get("node_id", "?"), data.get("node_type"))
    return f"ComfyUI failed to run prompt {prompt_id}: {label} raised {etype}: {emsg}"


def interrupted_message(prompt_id: str, data: Mapping[str, Any] | None) -> str:
    if data and data.get("node_id") is not None:
        return (f"prompt {prompt_id} was interrupted at "
                f"{node_label(data.get('node_id'), data.get('node_type'))}")
    return f"prompt {prompt_id} was interrupted"



def snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."

