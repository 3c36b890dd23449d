"""Post fired alerts to a webhook (Slack, Teams, anything that takes JSON).

The message has a ``text`` field (what Slack's and Teams' incoming webhooks show) and the structured
alert under ``sdeval``. It goes through the project's HTTP client and retry policy (timeouts,
bounded retries on timeouts, dropped connections, 5xx and 429). A failed notification is returned as
a warning: it never fails the run nor loses the recorded history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sdeval.core.http import RetryPolicy, TransportFailure, make_client, send


@dataclass(frozen=True)
class NotifyOutcome:
    ok: bool
    attempts: int
    status: int | None = None
    warning: str | None = None


def alert_message(run: Mapping[str, Any], fired: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The webhook body for ``fired`` alerts of ``run`` (plain text: Slack and Teams render it as is)."""
    head = (f"sdeval: {len(fired)} regression alert(s) in '{run.get('label')}' "
            f"(run {run.get('id')}, {run.get('command')}, {run.get('started_at')}"
            + (f", commit {str(run['git_commit'])[:12]}" if run.get("git_commit") else "") + ")")
    lines = [head] + [f"- {a['metric']}: {a['reason']}" for a in fired]
    return {"text": "\n".join(lines),
            "sdeval": {"run": {k: run.get(k) for k in ("id", "uid", "label", "command", "started_at", "host",
                                                        "git_commit", "protocol_hash", "out_dir", "tags")},
                       "alerts": [dict(a) for a in fired]}}


def post(url: str, body: Mapping[str, Any], *, timeout: float = 10.0, retries: int = 2,
         backoff: float = 0.5) -> NotifyOutcome:
    """POST ``body`` as JSON; retried as :mod:`sdeval.core.http` retries idempotent requests (a webhook
    shown twice beats one lost)."""
    policy = RetryPolicy(retries=retries, backoff=backoff, backoff_max=4.0)
    try:
        with make_client(timeout=timeout, connect_timeout=min(timeout, 5.0)) as client:
            ex = send(client, "POST", url, policy=policy, idempotent=True, json=dict(body))
    except TransportFailure as exc:
        return NotifyOutcome(False, exc.attempts, None,
                             f"notification to {_host(url)} failed ({exc}; {exc.tries()}); the run is recorded")
    except Exception as exc:  # noqa: BLE001 - a notification must never fail the run
        return NotifyOutcome(False, 1, None, f"notification to {_host(url)} failed: {type(exc).__name__}: {exc}")
    status = ex.response.status_code
    if 200 <= status < 300:
        return NotifyOutcome(True, ex.attempts, status)
    return NotifyOutcome(False, ex.attempts, status,
                         f"notification to {_host(url)} answered HTTP {status} after {ex.attempts} attempt(s): "
                         f"{ex.response.text[:200]!r}; the run is recorded")


def _host(url: str) -> str:
    """The webhook's host only: its path is often the secret."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
