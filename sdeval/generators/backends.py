"""What the regeneration loop needs of an image generator: submit a payload, wait for the next
finished one, cancel. ComfyUI (:mod:`sdeval.generators.comfyui.backend`) and AUTOMATIC1111
(:mod:`sdeval.generators.a1111`) both fit it; what to submit is the loop's business
(:mod:`sdeval.gates.recipes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Outcome:
    """A finished submission: images as ``(file name, bytes)``, or an error message.

    ``seconds`` runs from submission to completion; it splits into ``queue_seconds`` (waiting
    behind other prompts on the server) and ``execution_seconds`` (the server running this one),
    None where the server did not say. Summing ``seconds`` over prompts in flight together counts
    the queue wait twice; summing ``execution_seconds`` does not.
    """

    ticket: str
    ok: bool
    images: tuple[tuple[str, bytes], ...] = ()
    error: str | None = None
    seconds: float = 0.0
    cache_hit: bool = False
    queue_seconds: float | None = None
    execution_seconds: float | None = None


class RejectedError(Exception):
    """The server refused the payload itself (validation): another seed will not help."""



class Backend(Protocol):
    name: str
    #: seeds are drawn in 0 .. 2**seed_bits - 1
    seed_bits: int

    def describe(self) -> dict[str, Any]:
        """URL and server version, for the protocol."""

    def submit(self, payload: Mapping[str, Any]) -> str:
        """Queue one payload; returns a ticket. Raises :class:`RejectedError` for a refused payload."""

    def next_completed(self, tickets: Sequence[str], timeout: float) -> Outcome | None:
        """The next finished ticket among ``tickets`` (None after ``timeout`` seconds)."""

    def cancel(self, ticket: str) -> None:
        """Stop one submission."""

    def cancel_all(self) -> None:
        """Stop everything this backend submitted and has not seen finish."""

    def close(self) -> None:
        """Release connections."""
