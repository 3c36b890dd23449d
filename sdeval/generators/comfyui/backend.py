"""The regeneration loop's view of a ComfyUI server (:class:`~sdeval.generators.backends.Backend`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sdeval.generators.backends import Outcome, RejectedError
from sdeval.generators.comfyui.client import ComfyUIClient
from sdeval.generators.comfyui.errors import ComfyUIHTTPError, ComfyUITimeoutError, ComfyUIValidationError


class ComfyUIBackend:
    """The loop's view of a ComfyUI server, through :class:`ComfyUIClient`."""

    name = "comfyui"
    seed_bits = 64

    def __init__(self, url: str, *, client: ComfyUIClient | None = None, **client_options: Any) -> None:
        self.client = client or ComfyUIClient(url, **client_options)
        self.url = self.client.url

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "url": self.url, "server_version": self.client.server_version()}

    def submit(self, payload: Mapping[str, Any]) -> str:
        try:
            return self.client.submit(payload)
        except ComfyUIValidationError as exc:
            raise RejectedError(str(exc)) from exc

    def next_completed(self, tickets: Sequence[str], timeout: float) -> Outcome | None:
        try:
            result = next(iter(self.client.as_completed(list(tickets), timeout)))
        except ComfyUITimeoutError:
            return None
        pid = result.prompt_id
        timing: dict[str, Any] = {"seconds": result.seconds, "queue_seconds": result.queue_seconds,
                                  "execution_seconds": result.execution_seconds}
        try:
            if not result.ok:
                return Outcome(ticket=pid, ok=False, error=result.error or f"prompt {pid}: {result.status}",
                               **timing)
            # a cache hit can only be this very graph run before (seeds are never reused): an
            # interrupted run redoing its attempt. The old files are that graph's images.
            try:
                files = self.client.fetch_outputs(result, types=("output",))
                if not files:
                    files = self.client.fetch_outputs(result, types=("temp",))
            except ComfyUIHTTPError as exc:  # e.g. a cached result whose file was deleted on the server
                return Outcome(ticket=pid, ok=False, **timing, cache_hit=result.cache_hit,
                               error=f"cannot fetch the result: {exc}")
            if not files:
                return Outcome(ticket=pid, ok=False, **timing, cache_hit=result.cache_hit,
                               error="the graph ran but saved no image (no SaveImage / PreviewImage output)")
            return Outcome(ticket=pid, ok=True, images=tuple(files), **timing,
                           cache_hit=result.cache_hit)
        finally:
            self.client.forget(pid)

    def cancel(self, ticket: str) -> None:
        self.client.cancel(ticket)

    def cancel_all(self) -> None:
        self.client.cancel_all()

    def close(self) -> None:
        self.client.close()
