"""Content-addressed feature cache: a rerun over unchanged files costs a hash, not a forward.

Key: the sha256 of the file bytes (or, for text features, of the prompt) plus the extractor's
cache key (feature id, model, weights sha256, preprocessing version), so new weights or a
changed preprocessing step can never return stale numbers: they simply miss.

Stored in one SQLite file under the cache dir, in WAL mode with a busy timeout, so two runs
(a nightly job and an interactive gate) can read and write it at the same time. Values are
numpy arrays (dtype, shape, raw bytes), JSON-able values, or a flat dict mixing both; never
pickle, so a cache file from elsewhere cannot execute code. A cache that cannot be used
(corrupt file, disk full, locked too long) degrades to misses and a note in ``problems``: the
cache must never fail an evaluation.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

SCHEMA_VERSION = "1"
BUSY_TIMEOUT_S = 30.0
_IN_CHUNK = 500
_KIND_ND = "nd"
_KIND_JSON = "json"
_KIND_BUNDLE = "bundle"


@dataclass(frozen=True)
class CacheInfo:
    """What ``sdeval cache info`` shows."""

    path: Path | None
    entries: int
    size_bytes: int
    #: entries per extractor cache key
    by_feature: Mapping[str, int] = field(default_factory=dict)
    enabled: bool = True


# -- value encoding (no pickle) ----------------------------------------------------------------

def _encode_array(value: np.ndarray) -> tuple[str, str, bytes]:
    arr = np.ascontiguousarray(value)
    if arr.dtype.hasobject:
        raise TypeError("object arrays cannot be cached")
    return arr.dtype.str, json.dumps(list(arr.shape)), arr.tobytes()


def _decode_array(dtype: str, shape: str, data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(json.loads(shape))


def encode_value(value: Any) -> tuple[str, str | None, str | None, bytes]:
    """(kind, dtype, shape, bytes) for a cacheable value; TypeError for anything else."""
    if isinstance(value, np.ndarray):
        dtype, shape, data = _encode_array(value)
        return _KIND_ND, dtype, shape, data
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Mapping) and any(isinstance(v, np.ndarray) for v in value.values()):
        header: dict[str, Any] = {}
        blobs: list[bytes] = []
        offset = 0
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError("bundle keys must be strings")
            if isinstance(item, np.ndarray):
                dtype, shape, data = _encode_array(item)
                header[key] = {"nd": [dtype, json.loads(shape), offset, len(data)]}
                blobs.append(data)
                offset += len(data)
            else:
                header[key] = {"json": _jsonable(item)}
        head = json.dumps(header, separators=(",", ":")).encode("utf-8")
        return _KIND_BUNDLE, None, None, struct.pack("<Q", len(head)) + head + b"".join(blobs)
    return _KIND_JSON, None, None, json.dumps(_jsonable(value), separators=(",", ":")).encode("utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot cache a value of type {type(value).__name__} (numpy arrays and JSON only)")


def decode_value(kind: str, dtype: str | None, shape: str | None, data: bytes) -> Any:
    if kind == _KIND_ND:
        return _decode_array(dtype or "", shape or "[]", data)
    if kind == _KIND_JSON:
        return json.loads(data.decode("utf-8"))
    if kind == _KIND_BUNDLE:
        (n,) = struct.unpack_from("<Q", data, 0)
        header = json.loads(data[8:8 + n].decode("utf-8"))
        base = 8 + n
        out: dict[str, Any] = {}
        for key, entry in header.items():
            if "nd" in entry:
                dt, shp, off, length = entry["nd"]
                dtype = np.dtype(dt)
                out[key] = np.frombuffer(data, dtype=dtype, count=length // dtype.itemsize,
                                         offset=base + off).reshape(shp)
            else:
                out[key] = entry["json"]
        return out
    raise ValueError(f"unknown cached value kind {kind!r}")


# -- the cache --------------------------------------------------------------------------------------

class FeatureCache:
    """SQLite-backed ``(content sha256, feature key) -> value`` store, safe across processes."""

    enabled: bool = True

    def __init__(self, path: Path | str | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        if path is None:
            from sdeval.models.cache import features_db_path

            path = features_db_path()
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        #: why the cache was given up for this run (one failure, one warning; the run goes on)
        self.broken: str | None = None

    def _give_up(self, what: str, exc: BaseException) -> None:
        """The cache never fails a run: note the first failure once and run on without the cache."""
        if self.broken is None:
            self.broken = f"{what} ({exc})"
            self.problems.append(f"feature cache {self.path}: {what} ({exc}); this run goes on without the "
                                 "cache (results are unaffected)")

    # connection -------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = self._open()
        except sqlite3.DatabaseError as exc:
            if "not a database" not in str(exc) and "malformed" not in str(exc):
                raise
            # a corrupt cache is set aside, never fatal: it only held derived data
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                try:
                    os.unlink(str(self.path) + suffix)
                except FileNotFoundError:
                    pass
            self.problems.append(f"feature cache {self.path} was corrupt ({exc}); moved to {aside}")
            conn = self._open()
        self._conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                self.problems.append(f"feature cache is in {mode} mode, not WAL (file system without "
                                     f"shared memory?); concurrent runs will wait on each other")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if row is not None and row[0] != SCHEMA_VERSION:
                    conn.execute("DROP TABLE IF EXISTS features")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS features ("
                    " feature_key TEXT NOT NULL, content TEXT NOT NULL, kind TEXT NOT NULL,"
                    " dtype TEXT, shape TEXT, data BLOB NOT NULL, created REAL NOT NULL,"
                    " PRIMARY KEY (feature_key, content)) WITHOUT ROWID")
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # API ----------------------------------------------------------------------------------------
    def get_many(self, keys: Iterable[str], feature_key: str) -> dict[str, Any]:
        """Cached values for the content keys that have one (misses are simply absent)."""
        wanted = list(dict.fromkeys(k for k in keys if k))
        out: dict[str, Any] = {}
        if not wanted or self.broken:
            return out
        try:
            with self._lock:
                conn = self._connect()
                for start in range(0, len(wanted), _IN_CHUNK):
                    chunk = wanted[start:start + _IN_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT content, kind, dtype, shape, data FROM features "
                        f"WHERE feature_key = ? AND content IN ({marks})", (feature_key, *chunk)).fetchall()
                    for content, kind, dtype, shape, data in rows:
                        try:
                            out[content] = decode_value(kind, dtype, shape, bytes(data))
                        except (ValueError, TypeError, struct.error) as exc:
                            self.problems.append(f"unreadable cache entry {content[:12]} ({exc}); recomputed")
        except (sqlite3.Error, OSError) as exc:
            self._give_up("read failed", exc)
            return {}
        return out

    def put_many(self, feature_key: str, items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> int:
        """Store values (one transaction); returns how many were written."""
        pairs = items.items() if isinstance(items, Mapping) else items
        rows = []
        now = time.time()
        for content, value in pairs:
            if not content:
                continue
            kind, dtype, shape, data = encode_value(value)
            rows.append((feature_key, content, kind, dtype, shape, sqlite3.Binary(data), now))
        if not rows or self.broken:
            return 0
        try:
            with self._lock:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "INSERT OR REPLACE INTO features (feature_key, content, kind, dtype, shape, data, created)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
        except (sqlite3.Error, OSError) as exc:
            self._give_up("write failed", exc)
            return 0
        return len(rows)

    def info(self) -> CacheInfo:
        size = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                size += os.path.getsize(str(self.path) + suffix)
            except OSError:
                pass
        if not self.path.exists():
            return CacheInfo(self.path, 0, 0, {})
        with self._lock:
            conn = self._connect()
            by = dict(conn.execute("SELECT feature_key, COUNT(*) FROM features GROUP BY feature_key").fetchall())
        return CacheInfo(self.path, sum(by.values()), size, by)

    def clear(self, feature_key: str | None = None) -> int:
        """Delete every entry (or those of one feature key); returns how many were removed."""
        if not self.path.exists():
            return 0
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if feature_key is None:
                    n = conn.execute("DELETE FROM features").rowcount
                else:
                    n = conn.execute("DELETE FROM features WHERE feature_key = ?", (feature_key,)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("VACUUM")
            except sqlite3.OperationalError:  # another run holds it: space comes back later
                pass
        return int(n)


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLite has already rolled back after a full disk,
    and a second ROLLBACK ("no transaction is active") would hide the real error."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


class NullCache:
    """``--no-cache``: same API, never stores, always misses."""

    enabled: bool = False
    path: Path | None = None

    def __init__(self) -> None:
        self.problems: list[str] = []

    def get_many(self, keys: Iterable[str], feature_key: str) -> dict[str, Any]:
        return {}

    def put_many(self, feature_key: str, items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> int:
        return 0

    def info(self) -> CacheInfo:
        return CacheInfo(None, 0, 0, {}, enabled=False)

    def clear(self, feature_key: str | None = None) -> int:
        return 0

    def close(self) -> None:
        pass

    def __enter__(self) -> "NullCache":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def open_feature_cache(enabled: bool = True, path: Path | str | None = None) -> FeatureCache | NullCache:
    return FeatureCache(path) if enabled else NullCache()

