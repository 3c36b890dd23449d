"""Generation backends for the regeneration loop: ComfyUI (graphs) and AUTOMATIC1111 (txt2img).

The loop speaks one small interface, :class:`Backend`: make a :class:`Recipe` for an image (what
to submit, and how seed / prompt / face restoration change it), ``submit`` a payload, wait for
the ``next_completed`` one, ``cancel_all`` on Ctrl-C. Both servers fit it:

- ComfyUI: the payload is an API-format graph (the image's own, or ``--workflow``) edited by
  :mod:`sdeval.gates.mutations`; completion and files come from :class:`ComfyUIClient`.
- AUTOMATIC1111: the payload is a ``/sdapi/v1/txt2img`` body rebuilt from the row's metadata
  (prompt, negative, seed, size, steps, cfg, sampler); face restoration is its own
  ``restore_faces`` switch. The API is synchronous, so each request runs in a worker thread.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import contextlib
import json
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from sdeval.errors import SdevalError
from sdeval.gates.comfyui import ComfyUIClient, ComfyUIHTTPError, ComfyUITimeoutError, ComfyUIValidationError
from sdeval.gates.mutations import (FaceRestore, GraphError, GraphPlan, RepromptStrategy, insert_face_nodes)


@dataclass(frozen=True)
class AttemptSpec:
    """One attempt's mutation. Reprompt level and face restoration are sticky along a lineage:
    once the prompt was reworded or a face restored, later reseeds keep doing so."""

    attempt: int
    mutation: str
    seed: int
    reprompt_level: int = 0
    restore_face: bool = False
    #: names the attempt's files on the server (SaveImage filename_prefix)
    prefix: str = ""


@dataclass(frozen=True)
class Submission:
    """What goes to the server, and the positive prompt it carries (for the lineage)."""

    payload: dict[str, Any]
    prompt: str | None


@dataclass(frozen=True)
class Outcome:
    """A finished submission: images as ``(file name, bytes)``, or an error message."""

    ticket: str
    ok: bool
    images: tuple[tuple[str, bytes], ...] = ()
    error: str | None = None
    seconds: float = 0.0
    cache_hit: bool = False


class RejectedError(Exception):
    """The server refused the payload itself (validation): another seed will not help."""


class A1111ConnectionError(SdevalError):
    """AUTOMATIC1111 cannot be reached: the run stops (every attempt would fail the same way)."""


class Recipe(Protocol):
    source: str
    seed: int | None
    prompt: str | None

    def face_problem(self) -> str | None:
        """Why a face cannot be restored with this recipe (None: it can)."""

    def reprompt_problem(self) -> str | None:
        """Why the prompt cannot be reworded with this recipe (None: it can)."""

    def build(self, spec: AttemptSpec) -> Submission:
        """The payload for one attempt."""


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


# ------------------------------------------------------------------------------------------ ComfyUI

@dataclass(frozen=True)
class ComfyRecipe:
    """An image's graph plan plus the policy's rewording and face restoration."""

    plan: GraphPlan
    source: str
    reprompt: RepromptStrategy = field(default_factory=RepromptStrategy)
    face: FaceRestore | None = None
    #: the face workflow with this image's prompt and seed placed (workflow mode)
    face_plan: GraphPlan | None = None
    face_error: str | None = None

    @property
    def seed(self) -> int | None:
        return self.plan.seed

    @property
    def prompt(self) -> str | None:
        return self.plan.prompt

    def face_problem(self) -> str | None:
        if self.face is None:
            return ("restore_face asked for, but the policy configures no face-restoration step: set "
                    "[regenerate] restore_face_workflow (an API-format workflow) or restore_face_nodes")
        return self.face_error

    def reprompt_problem(self) -> str | None:
        if not self.plan.prompts:
            return ("reprompt asked for, but the graph's positive prompt is not a literal text input "
                    "(it is built by other nodes); pass --workflow FILE with a plain prompt input")
        return None

    def build(self, spec: AttemptSpec) -> Submission:
        level = spec.reprompt_level
        reword: Callable[[str], str] | None = (lambda t: self.reprompt.apply(t, level)) if level else None
        plan = self.plan
        if spec.restore_face and self.face_plan is not None:
            plan = self.face_plan
        graph = plan.build(spec.seed, reword, spec.prefix or None)
        if spec.restore_face and self.face_plan is None:
            if self.face is None or self.face.nodes is None:
                raise GraphError(self.face_problem() or "no face restoration configured")
            graph = insert_face_nodes(graph, self.face.nodes, self.face.output)
        return Submission(payload=graph, prompt=plan.prompt_after(reword))


def comfy_recipe(graph: Mapping[str, Any], source: str, *, reprompt: RepromptStrategy | None = None,
                 face: FaceRestore | None = None, place: tuple[str | None, int | None] | None = None,
                 ) -> ComfyRecipe:
    """A recipe from a graph; ``place=(prompt, seed)`` puts an image's values into a workflow.

    Raises :class:`GraphError` (the row's reason) when the graph cannot be regenerated.
    """
    what = "the embedded graph" if place is None else source
    plan = GraphPlan.from_graph(graph, what)
    if place is not None:
        plan = plan.placed(place[0], place[1], what)
    face_plan = face_error = None
    if face is not None and face.workflow is not None:
        try:
            face_plan = GraphPlan.from_graph(face.workflow, f"restore_face_workflow {face.workflow_path}")
            face_plan = face_plan.placed(plan.prompt, plan.seed, f"restore_face_workflow {face.workflow_path}")
        except GraphError as exc:
            face_error = str(exc)
    elif face is not None and face.nodes is not None:
        try:
            insert_face_nodes(dict(plan.graph), face.nodes, face.output)
        except GraphError as exc:
            face_error = str(exc)
    return ComfyRecipe(plan=plan, source=source, reprompt=reprompt or RepromptStrategy(), face=face,
                       face_plan=face_plan, face_error=face_error)


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
        try:
            if not result.ok:
                return Outcome(ticket=pid, ok=False, error=result.error or f"prompt {pid}: {result.status}",
                               seconds=result.seconds)
            # a cache hit can only be this very graph run before (seeds are never reused): an
            # interrupted run redoing its attempt. The old files are that graph's images.
            try:
                files = self.client.fetch_outputs(result, types=("output",))
                if not files:
                    files = self.client.fetch_outputs(result, types=("temp",))
            except ComfyUIHTTPError as exc:  # e.g. a cached result whose file was deleted on the server
                return Outcome(ticket=pid, ok=False, seconds=result.seconds, cache_hit=result.cache_hit,
                               error=f"cannot fetch the result: {exc}")
            if not files:
                return Outcome(ticket=pid, ok=False, seconds=result.seconds, cache_hit=result.cache_hit,
                               error="the graph ran but saved no image (no SaveImage / PreviewImage output)")
            return Outcome(ticket=pid, ok=True, images=tuple(files), seconds=result.seconds,
                           cache_hit=result.cache_hit)
        finally:
            self.client.forget(pid)

    def cancel(self, ticket: str) -> None:
        self.client.cancel(ticket)

    def cancel_all(self) -> None:
        self.client.cancel_all()

    def close(self) -> None:
        self.client.close()


# ------------------------------------------------------------------------------------------ AUTOMATIC1111

A1111_SEED_BITS = 32


@dataclass(frozen=True)
class A1111Recipe:
    """A txt2img body rebuilt from an image's metadata row."""

    body: Mapping[str, Any]
    source: str
    reprompt: RepromptStrategy = field(default_factory=RepromptStrategy)

    @property
    def seed(self) -> int | None:
        return self.body.get("seed")

    @property
    def prompt(self) -> str | None:
        return self.body.get("prompt")

    def face_problem(self) -> str | None:
        return None  # A1111's own restore_faces (GFPGAN / CodeFormer, as set in its settings)

    def reprompt_problem(self) -> str | None:
        return None

    def build(self, spec: AttemptSpec) -> Submission:
        body = dict(self.body)
        body["seed"] = spec.seed
        if spec.reprompt_level:
            body["prompt"] = self.reprompt.apply(str(body["prompt"]), spec.reprompt_level)
        if spec.restore_face:
            body["restore_faces"] = True
        return Submission(payload=body, prompt=body["prompt"])


def a1111_recipe(row: Mapping[str, Any], *, reprompt: RepromptStrategy | None = None) -> A1111Recipe:
    """From the row's metadata columns; :class:`GraphError` when there is no prompt to send."""
    prompt = row.get("prompt")
    if not prompt:
        raise GraphError("the image's metadata has no prompt to send to txt2img")
    width = row.get("base_width") or row.get("width")
    height = row.get("base_height") or row.get("height")
    body: dict[str, Any] = {"prompt": prompt, "negative_prompt": row.get("negative_prompt") or "",
                            "seed": row.get("seed"), "batch_size": 1, "n_iter": 1,
                            "send_images": True, "save_images": False}
    for key, value in (("width", width), ("height", height), ("steps", row.get("steps")),
                       ("cfg_scale", row.get("cfg"))):
        if value is not None:
            body[key] = value
    if "a1111" in str(row.get("source") or ""):  # other tools name samplers and models differently
        if row.get("sampler"):
            body["sampler_name"] = row["sampler"]
        if row.get("scheduler"):
            body["scheduler"] = row["scheduler"]
        if row.get("model"):
            body["override_settings"] = {"sd_model_checkpoint": row["model"]}
            body["override_settings_restore_afterwards"] = True
    return A1111Recipe(body=body, source="a1111 txt2img from the image's metadata",
                       reprompt=reprompt or RepromptStrategy())


def _png_with_text(png: bytes, key: str, value: str) -> bytes:
    """``png`` with a tEXt (latin-1) or iTXt chunk ``key`` after IHDR, unless one is there."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n") or len(png) < 33:
        return png
    pos = 8
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind = png[pos + 4:pos + 8]
        if kind in (b"tEXt", b"iTXt", b"zTXt") and png[pos + 8:pos + 8 + len(key) + 1] == key.encode() + b"\0":
            return png
        if kind == b"IEND":
            break
        pos += 12 + length
    try:
        kind, data = b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")
    except UnicodeEncodeError:
        kind, data = b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    (ihdr_len,) = struct.unpack(">I", png[8:12])
    cut = 8 + 12 + ihdr_len
    return png[:cut] + chunk + png[cut:]


class A1111Backend:
    """AUTOMATIC1111's web UI API (``--api``). Requests are synchronous: one worker thread each."""

    name = "a1111"
    seed_bits = A1111_SEED_BITS

    def __init__(self, url: str, *, concurrency: int = 2, timeout: float = 600.0,
                 connect_timeout: float = 5.0) -> None:
        if "://" not in url:
            url = "http://" + url
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=connect_timeout), trust_env=False,
                                  headers={"User-Agent": "sdeval-a1111-client"})
        self._pool = cf.ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="sdeval-a1111")
        self._futures: dict[str, cf.Future[Outcome]] = {}

    def _unreachable(self, exc: Exception) -> A1111ConnectionError:
        return A1111ConnectionError(f"cannot reach AUTOMATIC1111 at {self.url}: {exc}. Is the web UI running "
                                    "with --api there? Pass its URL with --a1111-url.")

    def describe(self) -> dict[str, Any]:
        """Also checks the server is there, so a wrong URL fails before any attempt is spent."""
        version = None
        try:
            resp = self._http.get(self.url + "/internal/sysinfo", timeout=10)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from exc
        except httpx.HTTPError:
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

        def failed(msg: str) -> Outcome:
            return Outcome(ticket=ticket, ok=False, error=msg, seconds=round(time.monotonic() - t0, 4))

        try:
            resp = self._http.post(self.url + "/sdapi/v1/txt2img", json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from exc
        except httpx.HTTPError as exc:
            return failed(f"AUTOMATIC1111 at {self.url}: POST /sdapi/v1/txt2img failed: {type(exc).__name__}: {exc}")
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
                png = _png_with_text(png, "parameters", infotexts[i])
            images.append((f"txt2img_{i:02d}.png", png))
        if not images:
            return failed("AUTOMATIC1111 returned no image")
        return Outcome(ticket=ticket, ok=True, images=tuple(images), seconds=round(time.monotonic() - t0, 4))

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
            with contextlib.suppress(httpx.HTTPError):
                self._http.post(self.url + "/sdapi/v1/interrupt", timeout=10)

    def cancel_all(self) -> None:
        running = [t for t, f in self._futures.items() if not f.cancel() and not f.done()]
        if running:
            with contextlib.suppress(httpx.HTTPError):
                self._http.post(self.url + "/sdapi/v1/interrupt", timeout=10)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()
