"""One HTTP client factory and one retry policy for every server sdeval talks to: ComfyUI,
AUTOMATIC1111 and the hosts weights are downloaded from.

What is retried (bounded, exponential back-off, tenacity): timeouts, dropped connections and
answers 5xx / 429. What is not: a 4xx (the request is wrong), a name that does not resolve or a
refused connection (no server or no network: retrying only makes the user wait, and an offline
machine must fail in about a second), and, for a request that is not idempotent, any failure that
may have reached the server (the caller checks what happened instead of sending it twice).
"""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

import httpx
import tenacity

#: errno values of "nobody is listening" / "no route": not worth a retry
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts, sleeping ``backoff * 2**n`` seconds (at most ``backoff_max``)."""

    retries: int = 3
    backoff: float = 0.5
    backoff_max: float = 8.0

    @property
    def attempts(self) -> int:
        return max(0, self.retries) + 1


@dataclass(frozen=True)
class Exchange:
    """The answer to one request, after however many attempts it took."""

    response: httpx.Response
    attempts: int
    seconds: float


class TransportFailure(Exception):
    """No answer: the last transport error, how many attempts were made, and whether the host
    is plainly unreachable (name not resolved, connection refused), which is never retried."""

    def __init__(self, cause: httpx.TransportError, attempts: int, seconds: float) -> None:
        super().__init__(str(cause) or type(cause).__name__)
        self.cause = cause
        self.attempts = attempts
        self.seconds = seconds
        self.unreachable = is_unreachable(cause)

    def tries(self) -> str:
        return f"{self.attempts} attempt{'s' if self.attempts != 1 else ''} over {self.seconds:.1f}s"


def make_client(*, timeout: float, connect_timeout: float = 5.0, trust_env: bool = True,
                user_agent: str = "sdeval", follow_redirects: bool = False) -> httpx.Client:
    """An ``httpx.Client`` with timeouts on everything (no request may wait forever)."""
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=connect_timeout), trust_env=trust_env,
                        follow_redirects=follow_redirects, headers={"User-Agent": user_agent})


def is_unreachable(exc: BaseException) -> bool:
    """A name that does not resolve or a refused / unroutable connection (walks the cause chain)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, socket.gaierror):
            return True
        if isinstance(cur, OSError) and cur.errno in _UNREACHABLE_ERRNOS:
            return True
        text = str(cur)
        if ("Name or service not known" in text or "nodename nor servname" in text
                or "Temporary failure in name resolution" in text or "getaddrinfo failed" in text
                or "Connection refused" in text or "Network is unreachable" in text):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status == 429


def _retryable_error(exc: BaseException, idempotent: bool) -> bool:
    if not isinstance(exc, httpx.TransportError) or is_unreachable(exc):
        return False
    if idempotent:
        return True
    # not idempotent: only what certainly never reached the server
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))


def send(client: httpx.Client, method: str, url: str, *, policy: RetryPolicy = RetryPolicy(),
         idempotent: bool = True, sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> Exchange:
    """``client.request(method, url, **kwargs)`` under ``policy``.

    Returns the first answer that is not retryable, or the last 5xx/429 once the attempts are spent
    (the caller reports its body). Raises :class:`TransportFailure` when no answer came; with
    ``idempotent=False`` a failure that may have reached the server raises at once.
    """
    t0 = time.monotonic()
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=tenacity.wait_exponential(multiplier=policy.backoff, max=policy.backoff_max),
        retry=(tenacity.retry_if_exception(lambda e: _retryable_error(e, idempotent))
               | tenacity.retry_if_result(lambda r: is_retryable_status(r.status_code))),
        retry_error_callback=lambda state: state.outcome.result(),  # last answer, or re-raise its error
        sleep=sleep, reraise=True)
    try:
        response = retrying(client.request, method, url, **kwargs)
    except httpx.TransportError as exc:
        raise TransportFailure(exc, retrying.statistics.get("attempt_number", 1),
                               time.monotonic() - t0) from exc
    return Exchange(response, retrying.statistics.get("attempt_number", 1), time.monotonic() - t0)


def check_url(url: str, what: str) -> str:
    """``url`` without a trailing slash, or ``ValueError`` unless it has an http(s) scheme and a host.

    Nothing is sent (``not-a-url`` must not become a DNS lookup of ``http://not-a-url``).
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what}: {url!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:8188")
    return url.strip().rstrip("/")
