"""Read, identify and decode inputs in a thread pool, ahead of the consumer, in input order.

Each worker reads the file once, hashes its bytes, reads metadata from the header, decodes to
RGB and runs the per-image ``prepare`` step of every feature extractor that still needs this
image. A pair feature's second image (its reference) is read, hashed and decoded here too, with
the same limits. Pillow, hashlib and numpy release the GIL, so threads overlap well. Results come
back in input order through a bounded window, so memory stays flat whatever the number of inputs.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator, Mapping, Protocol, Sequence

from sdeval.core.errors import DecodeError
from sdeval.core.io import NotReadable, read_regular_file, sha256_bytes
from sdeval.core.warn_capture import captured, install
from sdeval.features.base import Companion, FeatureExtractor
from sdeval.inputs.decode import DecodeOptions, header_exif, open_image, to_rgb
from sdeval.inputs.metadata.types import GenerationMetadata
from sdeval.inputs.record import ImageRecord, InputItem

_ORIENTATION_TAG = 0x0112

install()  # before any decode thread starts


class LoadPlan(Protocol):
    """What the loader asks once a record (with its sha256) is known (:class:`~sdeval.pipeline.cache_plan.CachePlan`)."""

    extractors: Sequence[FeatureExtractor]

    def lookup(self, rec: ImageRecord, companions: Mapping[str, str | None] | None = None
               ) -> tuple[Sequence[FeatureExtractor], dict[str, Any]]:
        """(extractors that still need this image, features already known by extractor id)."""


@dataclass(frozen=True)
class LoadedItem:
    record: ImageRecord
    #: extractor id -> prepared value (only for extractors that needed this image)
    prepared: dict[str, Any] = field(default_factory=dict)
    #: extractor id -> finished feature found in the cache
    cached: dict[str, Any] = field(default_factory=dict)
    #: pair extractor id -> sha256 of the companion file read for it (part of its cache key)
    companions: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class _File:
    path: str
    data: bytes | None
    sha256: str | None
    error: str | None = None


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def load_one(item: InputItem, plan: LoadPlan, options: DecodeOptions) -> LoadedItem:
    """Read one input into a record (+ prepared features). Never raises for a bad image; Python
    warnings raised meanwhile (Pillow's) become the row's warnings instead of stderr noise."""
    with captured() as caught:
        loaded = _load_one(item, plan, options)
    if not caught:
        return loaded
    rec = loaded.record
    return replace(loaded, record=replace(rec, warnings=rec.warnings + tuple(w for w in caught
                                                                             if w not in rec.warnings)))


def _load_one(item: InputItem, plan: LoadPlan, options: DecodeOptions) -> LoadedItem:
    record = ImageRecord(path=item.path, group=item.group,
                         metadata=item.overrides or GenerationMetadata())
    try:
        data = read_regular_file(item.path, options.max_file_bytes)
    except NotReadable as exc:
        return LoadedItem(replace(record, error=f"cannot read file: {exc}"))
    except OSError as exc:
        return LoadedItem(replace(record, error=f"cannot read file: {exc.strerror or exc}"))
    record = replace(record, sha256=sha256_bytes(data), size_bytes=len(data))
    try:
        im = open_image(data, options)
        record = _with_header(record, item, im)
    except Exception as exc:  # every failure of a decode step is this image's error row
        return LoadedItem(replace(record, error=_decode_failure(exc)))
    try:
        files = {ex.id: _read(path, options) for ex in plan.extractors if ex.has_companion
                 for path in (ex.companion_path(record),) if path is not None}
    except Exception as exc:  # a pairing failure is this image's error row
        return LoadedItem(replace(record, error=f"pairing failed: {type(exc).__name__}: {exc}"))
    shas = {eid: f.sha256 for eid, f in files.items()}
    needed, cached = plan.lookup(record, shas)
    # a pair feature without a companion has nothing to compare: it gets no pixels
    pixels = [ex for ex in needed if ex.needs_image and (not ex.has_companion or ex.id in files)]
    rgb = None
    if pixels:
        try:
            rgb = to_rgb(im)
        except Exception as exc:  # a malformed EXIF tag can raise struct.error inside exif_transpose
            return LoadedItem(replace(record, error=_decode_failure(exc)))
        record = replace(record, height=int(rgb.shape[0]), width=int(rgb.shape[1]))
    prepared: dict[str, Any] = {}
    for ex in needed:
        image = rgb if ex in pixels else None
        try:
            if ex.id in files:
                prepared[ex.id] = ex.prepare_pair(image, _companion(files[ex.id], options), record)
            else:
                prepared[ex.id] = ex.prepare(image, record)
        except Exception as exc:  # one image's preprocessing failure is that image's error row
            return LoadedItem(replace(record, error=f"{ex.id} preprocessing failed: {type(exc).__name__}: {exc}"))
    return LoadedItem(record, prepared, cached, shas)


def _decode_failure(exc: BaseException) -> str:
    if isinstance(exc, DecodeError):
        return str(exc)
    return f"cannot decode: {type(exc).__name__}: {exc}"


def _read(path: str, options: DecodeOptions = DecodeOptions()) -> _File:
    try:
        data = read_regular_file(path, options.max_file_bytes)
    except NotReadable as exc:
        return _File(path, None, None, f"cannot read file: {exc}")
    except OSError as exc:
        return _File(path, None, None, f"cannot read file: {exc.strerror or exc}")
    return _File(path, data, sha256_bytes(data))


def _companion(f: _File, options: DecodeOptions) -> Companion:
    """The companion decoded with the run's limits (only when a feature of it must be computed)."""
    if f.data is None:
        return Companion(f.path, f.sha256, error=f.error)
    try:
        return Companion(f.path, f.sha256, image=to_rgb(open_image(f.data, options)))
    except Exception as exc:  # the companion's decode failure is the pair's missing value
        return Companion(f.path, f.sha256, error=_decode_failure(exc))


def _with_header(record: ImageRecord, item: InputItem, im: Any) -> ImageRecord:
    from sdeval.inputs.metadata.reader import read_metadata

    w, h = im.size
    warnings: list[str] = []
    try:
        orientation = header_exif(im).get(_ORIENTATION_TAG)
    except Exception:
        orientation = None
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    try:
        meta = read_metadata(im, item.path)
    except Exception as exc:  # readers should not raise; if one does, the row keeps going
        meta = GenerationMetadata(warnings=(f"metadata reader failed: {type(exc).__name__}: {exc}",))
    if item.overrides is not None:
        meta = meta.merged(item.overrides)
    suffix = os.path.splitext(item.path)[1].lower().lstrip(".")
    expected = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "jfif": "JPEG", "webp": "WEBP"}.get(suffix)
    if expected and im.format not in (expected, "MPO"):
        warnings.append(f"file extension .{suffix} but content is {im.format}")
    return replace(record, format=im.format, mode=im.mode, width=w, height=h, metadata=meta,
                   warnings=record.warnings + tuple(warnings) + meta.warnings)


def iter_loaded(items: Iterable[InputItem], plan: LoadPlan, *,
                options: DecodeOptions = DecodeOptions(), workers: int | None = None,
                ahead: int = 64, executor: Executor | None = None) -> Iterator[LoadedItem]:
    """Yield loaded items in input order, at most ``ahead`` in flight."""
    own = executor is None
    pool = executor or ThreadPoolExecutor(max_workers=workers or default_workers(),
                                          thread_name_prefix="sdeval-decode")
    window: deque = deque()
    try:
        it = iter(items)
        for item in it:
            window.append(pool.submit(load_one, item, plan, options))
            if len(window) >= ahead:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        for fut in window:
            fut.cancel()
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
