"""Reference statistics: a folder's features reduced once, stored by name, reused every night.

``sdeval stats build DIR --name NAME`` keeps, per feature the requested metrics read, the float64
mean and unbiased covariance (FID, CLIP-FID) and, where KID/CMMD need them, the float32 features
themselves (sorted by path, the order KID's subsets are drawn from), together with the feature's
*identity*: model id, weights sha256, mode, input resolution, width. ``--ref-stats NAME`` refuses
to compare against statistics whose identity differs from the current run's (another mode,
weights file or resolution): that comparison would print a number that means nothing.

Files live in ``<cache dir>/stats/NAME.npz`` (arrays) + ``NAME.json`` (identity, source, N),
written atomically. clean-fid's published statistics are usable as ``cleanfid:DATASET/RES/SPLIT``
(downloaded once into the same folder; network needed the first time).
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sdeval.core.errors import InputError, UsageError

FORMAT_VERSION = 1
CLEANFID_PREFIX = "cleanfid:"
CLEANFID_URL = "https://www.cs.cmu.edu/~clean-fid/stats/"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ProtocolMismatchError(UsageError):
    """Generated and reference features were not made the same way (exit 2)."""


@dataclass(frozen=True, eq=False)
class StoredFeature:
    """One feature's reference side: identity, N, and what metrics need of it."""

    feature_id: str
    identity: Mapping[str, Any]
    n: int
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None
    #: (N, D) float32 features sorted by path (KID, CMMD)
    bank: np.ndarray | None = None

    @property
    def keeps(self) -> tuple[str, ...]:
        return tuple(k for k, v in (("stats", self.mu), ("bank", self.bank)) if v is not None)


@dataclass(frozen=True, eq=False)
class ReferenceStats:
    name: str
    features: Mapping[str, StoredFeature]
    created: str
    source: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created": self.created, "source": dict(self.source),
                "path": str(self.path) if self.path else None,
                "features": {fid: {"identity": dict(f.identity), "n": f.n, "keeps": list(f.keeps)}
                             for fid, f in self.features.items()}}


@dataclass(frozen=True)
class StatsInfo:
    """What ``sdeval stats list`` shows."""

    name: str
    created: str
    images: int
    features: tuple[str, ...]
    size_bytes: int
    source: str


def stats_dir() -> Path:
    from sdeval.models.cache import cache_dir

    return cache_dir() / "stats"


def check_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise UsageError(f"statistics name {name!r} must be letters, digits, '.', '_' or '-' (max 128)")
    return name


def _paths(name: str) -> tuple[Path, Path]:
    d = stats_dir()
    return d / f"{name}.npz", d / f"{name}.json"


def _atomic_bytes(path: Path, data: bytes) -> None:
    from sdeval.core.io import atomic_write_bytes

    atomic_write_bytes(path, data)


def save(name: str, features: Mapping[str, StoredFeature], source: Mapping[str, Any], *,
         overwrite: bool = False) -> ReferenceStats:
    """Write ``NAME.npz`` and ``NAME.json`` (arrays first, so a listed name always has its arrays)."""
    check_name(name)
    npz, meta = _paths(name)
    if meta.exists() and not overwrite:
        raise UsageError(f"reference statistics '{name}' already exist ({meta}); use --overwrite to replace them")
    arrays: dict[str, np.ndarray] = {}
    for fid, f in features.items():
        if f.mu is not None and f.sigma is not None:
            arrays[f"{fid}.mu"] = np.asarray(f.mu, dtype=np.float64)
            arrays[f"{fid}.sigma"] = np.asarray(f.sigma, dtype=np.float64)
        if f.bank is not None:
            arrays[f"{fid}.bank"] = np.asarray(f.bank, dtype=np.float32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _atomic_bytes(npz, buf.getvalue())
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record = {"format": FORMAT_VERSION, "name": name, "created": created, "source": dict(source),
              "features": {fid: {"identity": dict(f.identity), "n": f.n, "keeps": list(f.keeps)}
                           for fid, f in features.items()}}
    _atomic_bytes(meta, json.dumps(record, indent=1, sort_keys=True, default=str).encode("utf-8"))
    return ReferenceStats(name, dict(features), created, dict(source), npz)


def load(name: str, *, offline: bool | None = None) -> ReferenceStats:
    """Stored statistics by name (``cleanfid:...`` for clean-fid's published ones)."""
    if name.startswith(CLEANFID_PREFIX):
        return load_cleanfid(name, offline=offline)
    check_name(name)
    npz, meta = _paths(name)
    if not meta.is_file() or not npz.is_file():
        known = ", ".join(i.name for i in list_stats()) or "none"
        raise UsageError(f"no reference statistics named '{name}' in {stats_dir()} (known: {known}); "
                         f"build them with `sdeval stats build DIR --name {name}`")
    try:
        record = json.loads(meta.read_text(encoding="utf-8"))
        arrays = np.load(npz, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"reference statistics '{name}' are unreadable: {exc}") from exc
    if record.get("format") != FORMAT_VERSION:
        raise UsageError(f"reference statistics '{name}' have format {record.get('format')}, this sdeval reads "
                         f"{FORMAT_VERSION}: rebuild them with `sdeval stats build`")
    features: dict[str, StoredFeature] = {}
    with arrays:
        for fid, info in record["features"].items():
            get = (lambda key: arrays[key] if key in arrays.files else None)  # noqa: E731
            features[fid] = StoredFeature(fid, info["identity"], int(info["n"]), get(f"{fid}.mu"),
                                          get(f"{fid}.sigma"), get(f"{fid}.bank"))
    return ReferenceStats(name, features, record.get("created", ""), record.get("source", {}), npz)


def list_stats() -> list[StatsInfo]:
    out = []
    d = stats_dir()
    if not d.is_dir():
        return out
    for meta in sorted(d.glob("*.json")):
        try:
            record = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        npz = meta.with_suffix(".npz")
        if not npz.exists():
            continue
        feats = record.get("features", {})
        src = record.get("source", {})
        out.append(StatsInfo(record.get("name", meta.stem), record.get("created", ""),
                             max((int(f.get("n", 0)) for f in feats.values()), default=0),
                             tuple(f"{fid}({'+'.join(f.get('keeps', []))})" for fid, f in feats.items()),
                             npz.stat().st_size, str(src.get("paths") or src.get("url") or "")))
    return out


def remove(name: str) -> bool:
    check_name(name)
    removed = False
    for p in _paths(name):
        if p.exists():
            p.unlink()
            removed = True
    return removed


# -- protocol -------------------------------------------------------------------------------------------

def check_identity(stored: StoredFeature, current: Mapping[str, Any], *, ref_name: str) -> list[str]:
    """Raise :class:`ProtocolMismatchError` when the stored features were made differently.

    Returns warnings for facts that cannot be checked (published statistics record no weights hash).
    """
    diffs = []
    notes = []
    for key in sorted(set(stored.identity) | set(current)):
        a, b = stored.identity.get(key), current.get(key)
        if key == "weights_sha256" and a is None:
            notes.append(f"reference statistics '{ref_name}' do not record the {stored.feature_id} weights hash "
                         f"(published statistics); assuming the official weights")
            continue
        if _norm(a) != _norm(b):
            diffs.append(f"{key}: reference {a!r} vs generated {b!r}")
    if diffs:
        raise ProtocolMismatchError(
            f"reference statistics '{ref_name}' were made with a different {stored.feature_id} protocol; "
            f"comparing them would be meaningless:\n  " + "\n  ".join(diffs)
            + "\n  rebuild them with the same settings (`sdeval stats build ... --overwrite`) or change the run's")
    return notes


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v, sort_keys=True, default=str))


# -- clean-fid's published statistics --------------------------------------------------------------------

def cleanfid_url(name: str, mode: str, *, kid: bool = False) -> str:
    """``cleanfid:DATASET/RES/SPLIT`` -> the URL clean-fid's get_reference_statistics reads."""
    rest = name[len(CLEANFID_PREFIX):]
    parts = rest.split("/")
    if len(parts) != 3 or not all(parts):
        raise UsageError(f"clean-fid statistics are named 'cleanfid:DATASET/RES/SPLIT' (e.g. "
                         f"cleanfid:ffhq/1024/trainval70k), got {name!r}")
    dataset, res, split = parts
    suffix = "_kid" if kid else ""
    return f"{CLEANFID_URL}{dataset}_{mode}_{split}_{res}{suffix}.npz".lower()


def load_cleanfid(name: str, *, mode: str = "clean", offline: bool | None = None,
                  kid: bool = False) -> ReferenceStats:
    from sdeval.core.errors import ModelMissingError
    from sdeval.features.inception import DIM, MODEL_ID, RESOLUTION
    from sdeval.models.cache import is_offline
    from sdeval.models.fetch import download_file

    url = cleanfid_url(name, mode)
    urls = [("stats", url)] + ([("kid", cleanfid_url(name, mode, kid=True))] if kid else [])
    files = {}
    for what, u in urls:
        dest = stats_dir() / "cleanfid" / u.rsplit("/", 1)[-1]
        if not dest.is_file():
            if is_offline(offline):
                raise ModelMissingError(f"clean-fid statistics {name} ({u}) are not cached and sdeval is offline")
            download_file(u, dest, model_id=name)
        files[what] = dest
    with np.load(files["stats"]) as z:
        mu, sigma = z["mu"], z["sigma"]
    bank = None
    if "kid" in files:
        with np.load(files["kid"]) as z:
            bank = np.asarray(z["feats"], dtype=np.float32)
    identity = {"feature": "inception", "model": MODEL_ID, "mode": mode, "weights_sha256": None, "dim": DIM,
                "resolution": RESOLUTION if mode == "clean" else "native (resized inside the network)",
                "resize": "cleanfid PIL bicubic float32 (clean)" if mode == "clean" else "none"}
    n = int(bank.shape[0]) if bank is not None else 0  # 0: not published (their stats use 10k-70k images)
    feature = StoredFeature("inception", identity, n, mu, sigma, bank)
    return ReferenceStats(name, {"inception": feature}, "", {"url": url, "published_by": "clean-fid"},
                          files["stats"])


def stored_feature_from_set(fs: Any, identity: Mapping[str, Any]) -> StoredFeature:
    """A :class:`StoredFeature` from a streamed :class:`~sdeval.metrics.set_base.FeatureSet`."""
    mu = sigma = bank = None
    if fs.stats is not None and fs.n >= 2:
        st = fs.finalize_stats()
        mu, sigma = st.mu, st.sigma
    if fs.keep_bank:
        bank = fs.bank()
    return StoredFeature(fs.feature_id, dict(identity), fs.n, mu, sigma, bank)


def feature_set_of(stored: StoredFeature, keeps: Sequence[str], *, ref_name: str) -> Any:
    """The reference side for metrics needing ``keeps``; an error naming what is missing."""
    from sdeval.metrics.set_base import FeatureSet

    missing = [k for k in keeps if k not in stored.keeps]
    if missing:
        what = {"stats": "mean/covariance (FID)", "bank": "the features themselves (KID/CMMD)"}
        raise UsageError(f"reference statistics '{ref_name}' have no {', '.join(what[m] for m in missing)} for "
                         f"{stored.feature_id}; rebuild them with the metrics you need "
                         f"(`sdeval stats build DIR --name {ref_name} --metrics ... --overwrite`)")
    return FeatureSet.from_arrays(stored.feature_id, n=stored.n, mu=stored.mu if "stats" in keeps else None,
                                  sigma=stored.sigma if "stats" in keeps else None,
                                  bank=stored.bank if "bank" in keeps else None)


def reference_sets(name: str, extractors: Mapping[str, Any], keeps: Mapping[str, Any],
                   metric_options: Mapping[str, Any], *, kid: bool
                   ) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
    """``--ref-stats NAME`` for a run (eval, compare): the stored (or clean-fid) statistics as one
    FeatureSet per feature id of ``extractors``, checked to be made like this run's features;
    (sets, the reference entry of the result folder, warnings). A missing feature is a UsageError."""
    if name.startswith(CLEANFID_PREFIX):
        stored = load_cleanfid(name, mode=str(metric_options.get("fid_mode") or "clean"),
                               offline=metric_options.get("offline"), kid=kid)
    else:
        stored = load(name, offline=metric_options.get("offline"))
    warnings: list[str] = []
    sets = {}
    for fid, ex in extractors.items():
        if fid not in stored.features:
            raise UsageError(f"reference statistics '{name}' have no {fid} features (they hold "
                             f"{', '.join(stored.features) or 'none'}); rebuild them with the metrics you need")
        warnings += check_identity(stored.features[fid], ex.identity(), ref_name=name)
        sets[fid] = feature_set_of(stored.features[fid], sorted(keeps[fid]), ref_name=name)
    return sets, {"kind": "stats", **stored.as_dict()}, tuple(warnings)
