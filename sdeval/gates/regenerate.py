"""The regeneration loop: turn gate verdicts into actions until images pass or attempts run out.

After :func:`sdeval.api.gate` judged a folder, :func:`regenerate` acts on each row:

- ``block``: the image is copied into the quarantine folder with one audit line
  (:mod:`sdeval.gates.quarantine`); moved only when asked. Blocked images are never regenerated.
- ``reseed`` / ``reprompt`` / ``restore_face``: a lineage of attempts. Each attempt submits the
  image's recipe (its own embedded ComfyUI graph, ``--workflow`` with its prompt and seed placed,
  or an A1111 txt2img body) with the mutation the latest verdict asks for
  (:mod:`sdeval.gates.mutations`), saves what comes back under ``<out>/attempts/`` (originals
  are never touched), evaluates it with the same policy and stops at the first pass, a block,
  or ``max_attempts``.

Several prompts are kept in flight (``concurrency``, default 2): ComfyUI runs one prompt at a
time, so a second queued prompt keeps the GPU busy while the previous result is fetched and
evaluated; more only lengthens the server queue (and what Ctrl-C must cancel) without speed.

Resume: each finished attempt is appended (fsynced) to ``<out>/regeneration/state.jsonl`` before
the loop moves on. Running the same command with the same ``--out`` reloads those attempts and
continues; seeds are a pure function of the original seed and the seeds already used, so the
redone remainder asks for the same seeds an uninterrupted run would have.

Rows: an image whose lineage produced an evaluated attempt is described by that attempt (the
accepted one, else the last): its path, sha256, metadata, scores and verdict, with
``regenerated_from`` naming the original and ``regeneration`` holding the whole lineage
(attempt, mutation, seed, prompt, scores, verdict, seconds). Images without any evaluated attempt
keep their own row, with ``regeneration`` saying why (not regenerable, restore_face not
configured, interrupted...).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdeval.core.errors import InputError, PolicyError, UsageError
from sdeval.gates.engine import UNRESOLVED, BatchVerdict, judge_batch, judge_image
from sdeval.gates.mutations import (GraphError, RegenerateConfig, attempt_prefix, check_api_graph, load_workflow,
                                    next_seed)
from sdeval.gates.quarantine import quarantine
from sdeval.gates.recipes import AttemptSpec, Recipe, Submission, a1111_recipe, comfy_recipe
from sdeval.gates.result import GateResult, with_rows, write_result_folder
from sdeval.gates.rules import ACTION_STRENGTH
from sdeval.generators.a1111 import A1111Backend
from sdeval.generators.backends import Backend, Outcome, RejectedError
from sdeval.generators.comfyui.backend import ComfyUIBackend
from sdeval.pipeline.run import ProgressFn, RunOptions, build_metrics, iter_rows

BACKENDS = ("comfyui", "a1111")
DEFAULT_URLS = {"comfyui": "http://127.0.0.1:8188", "a1111": "http://127.0.0.1:7860"}
STATE_FILE = Path("regeneration") / "state.jsonl"
ATTEMPTS_DIR = "attempts"
STATE_VERSION = 1
#: the embedded graph is JSON from an untrusted file: size-limited like the metadata reader's
MAX_GRAPH_BYTES = 8 * 2 ** 20
#: lineage statuses
FINAL_STATUSES = ("accepted", "exhausted", "blocked", "not_regenerable", "unresolvable", "interrupted",
                  "aborted", "planned")
EXTRA_COLUMNS = ("regenerated_from", "regeneration", "quarantine")
#: an exception that stopped the loop carries the result it wrote under this attribute (:func:`partial_result`)
PARTIAL_RESULT_ATTR = "sdeval_partial_result"


@dataclass(frozen=True)
class RegenerateSettings:
    """How to act on verdicts. ``regenerate=False`` only quarantines blocked images."""

    backend: str = "comfyui"
    url: str | None = None
    max_attempts: int = 3
    concurrency: int = 2
    workflow: str | None = None
    dry_run: bool = False
    quarantine_dir: str | None = None
    quarantine_move: bool = False
    regenerate: bool = True
    #: seconds one submission may take, queue time included, before it is cancelled
    generation_timeout: float = 600.0
    #: extra keyword arguments for :class:`ComfyUIClient` (timeouts, polling)
    client_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UsageError(f"unknown regeneration backend {self.backend!r} (known: {', '.join(BACKENDS)})")
        if self.max_attempts < 1:
            raise UsageError("--max-attempts must be at least 1")
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.workflow and self.backend != "comfyui":
            raise UsageError("--workflow is a ComfyUI graph; it cannot be used with --regenerate a1111")


@dataclass(frozen=True)
class PlannedSubmission:
    """What a dry run would submit first for one image."""

    image: str
    attempt: int
    mutation: str
    seed: int
    prompt: str | None
    payload: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"image": self.image, "attempt": self.attempt, "mutation": self.mutation, "seed": self.seed,
                "prompt": self.prompt, "payload": dict(self.payload)}


@dataclass(frozen=True)
class RegenerationResult:
    """The final gate result (rows with lineage, summary with ``regeneration``) and dry-run plans."""

    gate: GateResult
    planned: tuple[PlannedSubmission, ...] = ()

    @property
    def passed(self) -> bool:
        return self.gate.passed


@dataclass
class _Lineage:
    """One image's attempts while the loop runs (mutable working state, not a result)."""

    row: dict[str, Any]
    key: str
    recipe: Recipe | None = None
    reason: str | None = None
    status: str = "pending"
    attempts: list[dict[str, Any]] = field(default_factory=list)
    resumed: int = 0
    base_seed: int = 0
    #: the original's sha256: seeds derive from (original seed, salt)
    salt: str = ""
    used: set[int] = field(default_factory=set)
    planned: PlannedSubmission | None = None


# ------------------------------------------------------------------------------------------ helpers

def image_key(path: str) -> str:
    """A folder name for an image's attempts: its stem plus a hash of its path (names may repeat)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem).strip("._")[:48] or "image"
    return f"{stem}-{hashlib.sha1(path.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def embedded_graph(path: str, sha256: str | None = None) -> dict[str, Any]:
    """The API graph ComfyUI's SaveImage wrote into the PNG's ``prompt`` chunk (re-read from the file,
    since rows do not carry raw metadata). :class:`GraphError` says why there is none."""
    from PIL import Image

    from sdeval.inputs.metadata._common import load_json

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GraphError(f"cannot read the image again: {exc}") from exc
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise GraphError("the image changed since it was evaluated")
    try:
        with Image.open(io.BytesIO(data)) as im:
            text = (getattr(im, "text", None) or {}).get("prompt") if im.format == "PNG" else None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this row's reason
        raise GraphError(f"cannot read the image's metadata: {type(exc).__name__}: {exc}") from exc
    if not text:
        raise GraphError("the image has no embedded ComfyUI graph (PNG 'prompt' chunk); pass --workflow FILE "
                         "(API format) to regenerate it")
    graph, problem = load_json(text, "embedded ComfyUI 'prompt'", MAX_GRAPH_BYTES)
    if problem is not None:
        raise GraphError(problem)
    return check_api_graph(graph, "the embedded graph")


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _sum_known(attempts: list[dict[str, Any]], key: str) -> float | None:
    """The sum of ``key`` over the attempts that have it (older state files lack the split); None if none."""
    known = [float(a[key]) for a in attempts if a.get(key) is not None]
    return round(sum(known), 3) if known else None


def partial_result(exc: BaseException) -> GateResult | None:
    """The result folder :func:`regenerate` wrote before ``exc`` stopped it (None if it wrote none)."""
    found = getattr(exc, PARTIAL_RESULT_ATTR, None)
    return found if isinstance(found, GateResult) else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _file_sha256(path: str | None) -> str | None:
    if not path:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class _State:
    """The append-only resume log: a ``run`` header (what the attempts depend on), then one
    ``attempt`` or ``quarantine`` event per line, each fsynced as it is written."""

    def __init__(self, path: Path, fingerprint: dict[str, Any], write: bool) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.write = write
        self.attempts: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        self.quarantines: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._has_header = False

    def load(self) -> None:
        if not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        for i, line in enumerate(lines):
            try:
                event = json.loads(line)
            except ValueError:
                if i == len(lines) - 1:
                    continue  # a line cut short by a crash: that attempt is redone
                raise InputError(f"{self.path}:{i + 1}: not a JSON line; the state file is damaged "
                                 "(remove it to start the regeneration over)") from None
            kind = event.get("event") if isinstance(event, dict) else None
            if kind == "run":
                if event.get("fingerprint") != self.fingerprint:
                    raise UsageError(
                        f"{self.path} was written by a regeneration run with a different policy, backend or "
                        "workflow; resuming it would mix attempts judged differently. Use another --out folder, "
                        "or delete the state file to start over.")
                self._has_header = True
            elif kind == "attempt":
                key = (event["image"], event.get("sha256"))
                runs = [a for a in self.attempts.setdefault(key, []) if a["attempt"] != event["attempt"]]
                self.attempts[key] = sorted(runs + [event], key=lambda a: a["attempt"])
            elif kind == "quarantine":
                self.quarantines[(event["image"], event.get("sha256"))] = event

    def append(self, event: dict[str, Any]) -> None:
        if not self.write:
            return
        from sdeval.gates.quarantine import append_jsonl

        if not self._has_header:
            append_jsonl(self.path, {"event": "run", "version": STATE_VERSION, "fingerprint": self.fingerprint,
                                     "time": _now()})
            self._has_header = True
        append_jsonl(self.path, event)


def _fingerprint(policy: Any, settings: RegenerateSettings) -> dict[str, Any]:
    """What attempts depend on: a resumed run must use the same (max_attempts, concurrency may change)."""
    policy_dict = {k: v for k, v in policy.as_dict().items() if k != "sources"}
    workflow_sha = _file_sha256(settings.workflow) if settings.workflow else None
    text = json.dumps({"policy": policy_dict, "backend": settings.backend, "workflow": workflow_sha},
                      sort_keys=True, default=str)
    return {"backend": settings.backend, "workflow_sha256": workflow_sha,
            "policy_sha256": hashlib.sha256(text.encode()).hexdigest()}


# ------------------------------------------------------------------------------------------ the loop

class _Loop:
    def __init__(self, result: GateResult, settings: RegenerateSettings, options: RunOptions,
                 progress: ProgressFn | None, on_attempt: Callable[[Mapping[str, Any]], None] | None,
                 backend: Backend | None) -> None:
        self.result = result
        self.policy = result.policy
        self.settings = settings
        self.options = options
        self.progress = progress
        self.on_attempt = on_attempt
        self.backend = backend
        self.own_backend = backend is None
        self.out_dir = result.out_dir
        self.bits = 64 if settings.backend == "comfyui" else 32
        try:
            self.config = RegenerateConfig.from_table(getattr(self.policy, "regenerate", None))
        except GraphError as exc:
            raise PolicyError(f"[regenerate]: {exc}") from exc
        self.workflow: dict[str, Any] | None = None
        if settings.workflow:
            try:
                self.workflow = load_workflow(settings.workflow)
            except GraphError as exc:
                raise UsageError(f"--workflow: {exc}") from exc
        self.quarantine_on = settings.regenerate or settings.quarantine_dir is not None
        qdir = settings.quarantine_dir or (str(self.out_dir / "quarantine") if self.out_dir else "quarantine")
        self.quarantine_dir = Path(qdir)
        state_path = (self.out_dir or Path(".")) / STATE_FILE
        self.state = _State(state_path, _fingerprint(self.policy, settings),
                            write=not settings.dry_run and self.out_dir is not None)
        if self.out_dir is not None:
            self.state.load()
        self.metrics = build_metrics(self.policy.metrics, options.metric_options)
        self.metric_names = [m.name for m in self.metrics]
        self.generator: dict[str, Any] | None = None
        self.started = time.perf_counter()

    # ---- setup

    def _recipe(self, row: Mapping[str, Any], base_seed: int) -> Recipe:
        cfg = self.config
        if self.settings.backend == "a1111":
            return a1111_recipe(row, reprompt=cfg.reprompt)
        if self.workflow is not None:
            seed = row.get("seed") if row.get("seed") is not None else base_seed
            return comfy_recipe(self.workflow, f"workflow {self.settings.workflow}", reprompt=cfg.reprompt,
                                face=cfg.restore_face, place=(row.get("prompt"), seed))
        return comfy_recipe(embedded_graph(row["path"], row.get("sha256")), "embedded graph",
                            reprompt=cfg.reprompt, face=cfg.restore_face)

    def _lineage(self, row: dict[str, Any]) -> _Lineage:
        lin = _Lineage(row=row, key=image_key(row["path"]))
        sha = row.get("sha256") or hashlib.sha256(row["path"].encode("utf-8", "surrogateescape")).hexdigest()
        lin.base_seed = int(sha[:16], 16) % (2 ** self.bits)
        lin.salt = sha
        try:
            lin.recipe = self._recipe(row, lin.base_seed)
        except GraphError as exc:
            lin.status, lin.reason = "not_regenerable", str(exc)
            return lin
        if lin.recipe.seed is not None:
            lin.base_seed = int(lin.recipe.seed)
            lin.used.add(int(lin.recipe.seed))
        lin.attempts = list(self.state.attempts.get((row["path"], row.get("sha256")), []))
        lin.resumed = len(lin.attempts)
        lin.used.update(int(a["seed"]) for a in lin.attempts)
        self._settle(lin)
        return lin

    def _settle(self, lin: _Lineage) -> None:
        """Decide from the attempts so far whether the lineage is finished."""
        for a in lin.attempts:
            if a.get("verdict") == "pass":
                lin.status = "accepted"
                return
        last = lin.attempts[-1] if lin.attempts else None
        if last is not None and last.get("verdict") == "block":
            lin.status = "blocked"
        elif last is not None and last.get("rejected"):
            lin.status, lin.reason = "not_regenerable", last.get("error")
        elif len(lin.attempts) >= self.settings.max_attempts:
            lin.status = "exhausted"
        else:
            spec = self._next_spec(lin)
            if isinstance(spec, str):
                lin.status, lin.reason = "unresolvable", spec
            else:
                lin.status = "pending"

    def _next_spec(self, lin: _Lineage) -> AttemptSpec | str:
        """The next attempt's mutation, from the latest verdict in the lineage; a str: why none."""
        assert lin.recipe is not None
        n = len(lin.attempts) + 1
        evaluated = [a for a in lin.attempts if a.get("verdict")]
        if evaluated:
            action, source_seed = evaluated[-1]["verdict"], evaluated[-1]["seed"]
        else:
            action, source_seed = lin.row["verdict"], lin.recipe.seed
        last = lin.attempts[-1] if lin.attempts else None
        level = int(last.get("reprompt_level", 0)) if last else 0
        face = bool(last.get("restore_face")) if last else False
        if action == "restore_face":
            problem = lin.recipe.face_problem()
            if problem:
                return problem
            # restore the face of the image that asked for it (same seed: the graph differs by the
            # restoration step, so it is no cache hit); once restoring, further tries reseed
            seed = int(source_seed) if not face and source_seed is not None else next_seed(
                lin.base_seed, lin.used, self.bits, lin.salt)
            face = True
        elif action == "reprompt":
            problem = lin.recipe.reprompt_problem()
            if problem:
                return problem
            level += 1
            seed = next_seed(lin.base_seed, lin.used, self.bits, lin.salt)
        else:
            seed = next_seed(lin.base_seed, lin.used, self.bits, lin.salt)
        return AttemptSpec(attempt=n, mutation=action, seed=seed, reprompt_level=level, restore_face=face,
                           prefix=attempt_prefix(lin.key, n))

    # ---- quarantine

    def _quarantine_row(self, row: dict[str, Any]) -> None:
        key = (row["path"], row.get("sha256"))
        done = self.state.quarantines.get(key)
        if done is not None:
            row["quarantine"] = done["record"]
            return
        if self.settings.dry_run:
            row["quarantine"] = {"planned": True, "folder": str(self.quarantine_dir),
                                 "moved": self.settings.quarantine_move}
            return
        try:
            rec = quarantine(row["path"], self.quarantine_dir, sha256=row.get("sha256"), verdict=row["verdict"],
                             reasons=list(row.get("reasons") or []), scores=self._scores(row),
                             move=self.settings.quarantine_move, run=str(self.out_dir) if self.out_dir else None)
        except (OSError, InputError) as exc:
            row["quarantine"] = {"error": str(exc)}
            return
        row["quarantine"] = rec.as_dict()
        self.state.append({"event": "quarantine", "image": row["path"], "sha256": row.get("sha256"),
                           "record": rec.as_dict(), "row": {k: v for k, v in row.items() if k != "quarantine"}})

    def _scores(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {m: row.get(m) for m in self.metric_names}

    # ---- attempts

    def _finish_attempt(self, lin: _Lineage, spec: AttemptSpec, sub: Submission, outcome: Outcome,
                        ticket: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "event": "attempt", "image": lin.row["path"], "sha256": lin.row.get("sha256"),
            "attempt": spec.attempt, "mutation": spec.mutation, "seed": spec.seed, "prompt": sub.prompt,
            "reprompt_level": spec.reprompt_level, "restore_face": spec.restore_face, "ticket": ticket,
            "seconds": round(outcome.seconds, 3), "queue_seconds": _round(outcome.queue_seconds),
            "execution_seconds": _round(outcome.execution_seconds), "cache_hit": outcome.cache_hit,
            "error": outcome.error,
            "files": [], "path": None, "image_sha256": None, "verdict": None, "reasons": [], "scores": {},
            "finished_at": _now()}
        if not outcome.ok:
            return record
        from sdeval.core.io import atomic_write_bytes

        assert self.out_dir is not None
        folder = self.out_dir / ATTEMPTS_DIR / lin.key
        files = []
        for i, (name, data) in enumerate(outcome.images):
            suffix = Path(name).suffix.lower() or ".png"
            tag = "" if len(outcome.images) == 1 else f"-{i + 1}"
            dest = folder / f"a{spec.attempt:02d}{tag}{suffix}"
            atomic_write_bytes(dest, data)
            files.append(str(dest))
        record["files"] = files
        chosen = self._evaluate(lin, files)
        if chosen is None:
            record["error"] = "no image of the attempt could be evaluated"
            return record
        record.update(path=chosen["path"], image_sha256=chosen.get("sha256"), verdict=chosen["verdict"],
                      reasons=list(chosen["reasons"]), scores=self._scores(chosen), row=chosen)
        if chosen["verdict"] == "block" and self.quarantine_on:
            try:
                rec = quarantine(chosen["path"], self.quarantine_dir, sha256=chosen.get("sha256"),
                                 verdict="block", reasons=list(chosen["reasons"]), scores=self._scores(chosen),
                                 move=False, run=str(self.out_dir), source=lin.row["path"])
                record["quarantine"] = rec.as_dict()
            except (OSError, InputError) as exc:
                record["quarantine"] = {"error": str(exc)}
        return record

    def _evaluate(self, lin: _Lineage, files: list[str]) -> dict[str, Any] | None:
        """Judge the attempt's images with the same policy; the first passing one (else the mildest)
        stands for the attempt. Scored against the original prompt: a reprompt changes how the
        prompt is put to the model, not what the image should show."""
        from sdeval.inputs.metadata.types import GenerationMetadata
        from sdeval.inputs.record import InputItem

        prompt = lin.row.get("prompt")
        override = GenerationMetadata(prompt=prompt) if prompt else None
        items = [InputItem(path=f, overrides=override, group=lin.row.get("group")) for f in files]
        rows = []
        for row in iter_rows(items, self.metrics, self.options):
            v = judge_image(row, self.policy)
            row.update(verdict=v.verdict, reasons=list(v.reasons), notes=list(v.notes))
            rows.append(row)
        rows = [r for r in rows if r["verdict"] != "error"] or rows
        if not rows:
            return None
        return min(rows, key=lambda r: ACTION_STRENGTH.get(r["verdict"], 99))

    # ---- running

    def run(self) -> RegenerationResult:
        rows = [dict(r) for r in self.result.rows]
        lineages: list[_Lineage] = []
        for row in rows:
            if row.get("verdict") == "block" and self.quarantine_on:
                self._quarantine_row(row)
            elif row.get("verdict") in UNRESOLVED and self.settings.regenerate:
                lineages.append(self._lineage(row))
        present = {r["path"] for r in rows}
        for (path, _), event in self.state.quarantines.items():  # moved away by an earlier run
            if path not in present and event["record"].get("moved") and isinstance(event.get("row"), dict):
                rows.append({**event["row"], "quarantine": event["record"]})
        pending = [lin for lin in lineages if lin.status == "pending"]
        planned: list[PlannedSubmission] = []
        failure: BaseException | None = None
        if self.settings.dry_run:
            for lin in pending:
                planned_sub = self._plan(lin)
                if planned_sub is not None:
                    planned.append(planned_sub)
        elif pending:
            try:
                self._drive(pending)
            except BaseException as exc:  # Ctrl-C or a server failure: leave a consistent folder, then raise
                failure = exc
                status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "aborted"
                for lin in pending:
                    if lin.status == "pending":
                        lin.status = status
                        lin.reason = None if status == "interrupted" else f"{type(exc).__name__}: {exc}"
        final = self._finalize(rows, lineages, interrupted=failure is not None)
        if failure is not None:
            if final.out_dir is not None:  # the caller reports what was written and how to resume
                with contextlib.suppress(AttributeError, TypeError):  # an exception without __dict__
                    setattr(failure, PARTIAL_RESULT_ATTR, final)
            raise failure
        return RegenerationResult(gate=final, planned=tuple(planned))

    def _plan(self, lin: _Lineage) -> PlannedSubmission | None:
        spec = self._next_spec(lin)
        assert lin.recipe is not None and not isinstance(spec, str)
        try:
            sub = lin.recipe.build(spec)
        except GraphError as exc:
            lin.status, lin.reason = "not_regenerable", str(exc)
            return None
        lin.status = "planned"
        lin.planned = PlannedSubmission(image=lin.row["path"], attempt=spec.attempt, mutation=spec.mutation,
                                        seed=spec.seed, prompt=sub.prompt, payload=sub.payload)
        return lin.planned

    def _open_backend(self) -> Backend:
        if self.backend is None:
            url = self.settings.url or DEFAULT_URLS[self.settings.backend]
            if self.settings.backend == "comfyui":
                self.backend = ComfyUIBackend(url, **dict(self.settings.client_options))
            else:
                self.backend = A1111Backend(url, concurrency=self.settings.concurrency,
                                            timeout=self.settings.generation_timeout)
        self.generator = self.backend.describe()
        return self.backend

    def _drive(self, pending_list: list[_Lineage]) -> None:
        total, done = len(pending_list), 0
        pending = deque(pending_list)
        in_flight: dict[str, tuple[_Lineage, AttemptSpec, Submission, float]] = {}
        timeout = self.settings.generation_timeout

        def finished(lin: _Lineage) -> None:
            nonlocal done
            done += 1
            if self.progress is not None:
                self.progress(done, total)

        def record(lin: _Lineage, rec: dict[str, Any]) -> None:
            lin.attempts.append(rec)
            self.state.append(rec)
            if self.on_attempt is not None:
                self.on_attempt({k: v for k, v in rec.items() if k != "row"})
            self._settle(lin)
            if lin.status == "pending":
                pending.append(lin)
            else:
                finished(lin)

        try:
            backend = self._open_backend()
            while pending or in_flight:
                while pending and len(in_flight) < self.settings.concurrency:
                    lin = pending.popleft()
                    spec = self._next_spec(lin)
                    if isinstance(spec, str):
                        lin.status, lin.reason = "unresolvable", spec
                        finished(lin)
                        continue
                    assert lin.recipe is not None
                    try:
                        sub = lin.recipe.build(spec)
                    except GraphError as exc:
                        lin.status, lin.reason = "not_regenerable", str(exc)
                        finished(lin)
                        continue
                    lin.used.add(spec.seed)
                    try:
                        ticket = backend.submit(sub.payload)
                    except RejectedError as exc:
                        rec = self._finish_attempt(lin, spec, sub, Outcome(ticket="", ok=False, error=str(exc)), "")
                        rec["rejected"] = True
                        record(lin, rec)
                        continue
                    in_flight[ticket] = (lin, spec, sub, time.monotonic())
                if not in_flight:
                    continue
                now = time.monotonic()
                wait = max(0.05, min(t0 for *_, t0 in in_flight.values()) + timeout - now)
                outcome = backend.next_completed(list(in_flight), wait)
                if outcome is None:
                    now = time.monotonic()
                    for ticket, (lin, spec, sub, t0) in list(in_flight.items()):
                        if now - t0 >= timeout:
                            del in_flight[ticket]
                            backend.cancel(ticket)
                            msg = f"no result within {timeout:g}s (queue time included); cancelled"
                            record(lin, self._finish_attempt(
                                lin, spec, sub, Outcome(ticket=ticket, ok=False, error=msg, seconds=now - t0),
                                ticket))
                    continue
                lin, spec, sub, _ = in_flight.pop(outcome.ticket)
                record(lin, self._finish_attempt(lin, spec, sub, outcome, outcome.ticket))
        except BaseException:
            if in_flight and self.backend is not None:
                try:
                    self.backend.cancel_all()  # their lineages stay pending: the caller marks them
                except Exception:  # noqa: BLE001 - the server may be the reason we are here
                    pass
            raise
        finally:
            if self.own_backend and self.backend is not None:
                try:
                    self.backend.close()
                except Exception:  # noqa: BLE001
                    pass

    # ---- results

    def _public_attempt(self, a: Mapping[str, Any]) -> dict[str, Any]:
        """An attempt as results.jsonl shows it: no copy of its row, ComfyUI's prompt id by name."""
        out = {k: v for k, v in a.items() if k not in ("event", "image", "sha256", "row", "ticket")}
        if self.settings.backend == "comfyui":
            out["prompt_id"] = a.get("ticket") or None
        return out

    def _final_row(self, lin: _Lineage) -> dict[str, Any]:
        orig = lin.row
        accepted = next((a for a in lin.attempts if a.get("verdict") == "pass"), None)
        evaluated = [a for a in lin.attempts if isinstance(a.get("row"), dict)]
        chosen = accepted or (evaluated[-1] if evaluated else None)
        lineage: dict[str, Any] = {
            "status": lin.status, "reason": lin.reason, "backend": self.settings.backend,
            "source": lin.recipe.source if lin.recipe is not None else None,
            "original_seed": lin.recipe.seed if lin.recipe is not None else orig.get("seed"),
            "accepted_attempt": accepted["attempt"] if accepted else None,
            "resumed_attempts": lin.resumed,
            "attempts": [self._public_attempt(a) for a in lin.attempts],
        }
        if lin.planned is not None:
            lineage["next"] = {k: v for k, v in lin.planned.as_dict().items() if k != "payload"}
        if chosen is None:
            row = dict(orig)
            row["regenerated_from"] = None
        else:
            row = dict(chosen["row"])
            row["group"] = orig.get("group")
            row["duplicate_of"] = None
            row["regenerated_from"] = {"path": orig["path"], "sha256": orig.get("sha256"),
                                       "verdict": orig["verdict"], "reasons": list(orig.get("reasons") or []),
                                       "seed": orig.get("seed"), "prompt": orig.get("prompt")}
            if chosen.get("quarantine"):
                row["quarantine"] = chosen["quarantine"]
        row["regeneration"] = lineage
        return row

    def _finalize(self, rows: list[dict[str, Any]], lineages: list[_Lineage], interrupted: bool) -> GateResult:
        by_path = {lin.row["path"]: lin for lin in lineages}
        final_rows = [self._final_row(by_path[r["path"]]) if r["path"] in by_path else r for r in rows]
        for r in final_rows:
            for col in EXTRA_COLUMNS:
                r.setdefault(col, None)
        batch = judge_batch((r["verdict"] for r in final_rows), self.policy)
        unresolved = [r for r in final_rows if r["verdict"] in UNRESOLVED]
        if self.settings.regenerate and unresolved and not self.settings.dry_run:
            why = f"{len(unresolved)} image(s) still unresolved after regeneration"
            batch = BatchVerdict(passed=False, counts=batch.counts, pass_rate=batch.pass_rate,
                                 reasons=batch.reasons + (why,))
        summary_updates: dict[str, Any] = {"regeneration": self._summary(lineages, final_rows, interrupted)}
        if self.generator is not None:
            protocol = dict(self.result.summary.get("protocol") or {})
            protocol["generator"] = {**self.generator, "workflow": self.settings.workflow}
            summary_updates["protocol"] = protocol
        final = with_rows(self.result, final_rows, batch=batch, extra_columns=EXTRA_COLUMNS,
                          summary_updates=summary_updates)
        if self.out_dir is not None and not self.settings.dry_run:
            final = write_result_folder(final, self.out_dir)
        return final

    def _summary(self, lineages: list[_Lineage], rows: list[dict[str, Any]], interrupted: bool) -> dict[str, Any]:
        counts = {s: sum(1 for lin in lineages if lin.status == s) for s in ("pending",) + FINAL_STATUSES}
        accepted = [lin for lin in lineages if lin.status == "accepted"]
        attempts = [a for lin in lineages for a in lin.attempts]
        gen_seconds = sum(float(a.get("seconds") or 0.0) for a in attempts)
        per_accepted = [next(a["attempt"] for a in lin.attempts if a.get("verdict") == "pass") for lin in accepted]
        quarantined = [r for r in rows if isinstance(r.get("quarantine"), dict) and r["quarantine"].get("path")]
        return {
            "enabled": self.settings.regenerate, "dry_run": self.settings.dry_run,
            "backend": self.settings.backend, "url": self.settings.url or DEFAULT_URLS[self.settings.backend],
            "server_version": (self.generator or {}).get("server_version"),
            "workflow": self.settings.workflow, "max_attempts": self.settings.max_attempts,
            "concurrency": self.settings.concurrency,
            "images": len(lineages), "statuses": {k: v for k, v in counts.items() if v},
            "accepted": len(accepted),
            "acceptance_rate": round(len(accepted) / len(lineages), 4) if lineages else None,
            "attempts": len(attempts),
            "attempts_per_accepted": round(sum(per_accepted) / len(per_accepted), 3) if per_accepted else None,
            "resumed_attempts": sum(lin.resumed for lin in lineages),
            # submission to completion per attempt, summed: prompts in flight together count their
            # queue wait twice, so this can exceed wall_seconds; execution_seconds does not
            "generation_seconds": round(gen_seconds, 3),
            "seconds_per_attempt": round(gen_seconds / len(attempts), 3) if attempts else None,
            "queue_seconds": _sum_known(attempts, "queue_seconds"),
            "execution_seconds": _sum_known(attempts, "execution_seconds"),
            # this run of the loop (resumed attempts were timed by the run that made them)
            "wall_seconds": round(time.perf_counter() - self.started, 3),
            "unresolved": sum(1 for r in rows if r["verdict"] in UNRESOLVED),
            "quarantined": len(quarantined),
            "quarantine_dir": str(self.quarantine_dir) if self.quarantine_on else None,
            "interrupted": interrupted,
            "state_file": str(self.state.path) if self.state.write else None,
            "attempts_dir": str(self.out_dir / ATTEMPTS_DIR) if self.out_dir is not None else None,
        }


def regenerate(result: GateResult, settings: RegenerateSettings, *, options: RunOptions | None = None,
               progress: ProgressFn | None = None,
               on_attempt: Callable[[Mapping[str, Any]], None] | None = None,
               backend: Backend | None = None) -> RegenerationResult:
    """Act on ``result``'s verdicts: quarantine blocked images, regenerate failing ones.

    ``result`` must come from :func:`sdeval.api.gate` with an ``out_dir`` (attempts, state and
    the rewritten result files go there), except for a dry run, which only plans. ``progress``
    gets (images finished, images to regenerate); ``on_attempt`` each finished attempt's record.
    ``backend`` replaces the one ``settings`` describe (tests, custom servers). On Ctrl-C or a
    server failure the in-flight prompts are cancelled, the result folder is rewritten with what
    finished, and the exception propagates carrying that result (:func:`partial_result`); rerunning
    resumes.
    """
    if result.out_dir is None and not settings.dry_run:
        raise UsageError("regeneration needs a result folder (out_dir) for its attempts and state")
    options = options or RunOptions()
    options = replace(options, metric_options={**result.policy.options, **options.metric_options})
    return _Loop(result, settings, options, progress, on_attempt, backend).run()
