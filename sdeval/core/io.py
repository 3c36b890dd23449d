"""Files written atomically (temp file + fsync + rename), file hashes, and plain-JSON encoding.

Every file sdeval writes goes through here, so a kill -9 never leaves a partial file behind.
Text from image metadata may hold lone surrogates (undecodable file names): ``safe_text`` makes
it encodable instead of failing the write.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: the largest file an input may be (a generated image is a few MB; a 16k x 16k PNG ~ 1 GB)
DEFAULT_MAX_FILE_BYTES = 1 << 30


class NotReadable(Exception):
    """A path that must not be read as an input file (not a regular file, or over the size limit)."""


def read_regular_file(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; never blocks, never reads a device.

    A FIFO would block ``open`` forever and ``/dev/zero`` would fill memory: the path is opened
    non-blocking and checked with ``fstat`` on the open descriptor (no race with a swapped file).
    Raises :class:`NotReadable` with the reason, or ``OSError``.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotReadable(f"not a regular file ({_file_kind(st.st_mode)})")
        if st.st_size > max_bytes:
            raise NotReadable(f"file is {st.st_size} bytes, over the limit of {max_bytes} "
                              "(raise it with --max-file-bytes)")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(_CHUNK * 8, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # the file grew while being read
                raise NotReadable(f"file grew past the limit of {max_bytes} bytes while being read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a plain file"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in chunks (weights can be GBs)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _write_temp(path: Path, data: bytes) -> str:
    """``data`` in a fsynced temp file beside ``path`` (mode 0666 less the umask); returns its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _unlink(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def atomic_write_many(files: Mapping[Path, bytes]) -> None:
    """Write several files so that they change together: every temp file is written first, then all
    are renamed. A failure while writing (a full disk) leaves the previous files, complete, or none."""
    done: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            done.append((_write_temp(path, data), path))
    except BaseException:
        for tmp, _ in done:
            _unlink(tmp)
        raise
    for tmp, path in done:
        os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The file gets the mode any other tool would give it (0666 less the umask), not mkstemp's 0600.
    """
    atomic_write_many({path: data})


def check_writable_dir(path: Path) -> None:
    """Prove that ``path`` can be created (or written, when it exists) before any work is spent,
    leaving nothing behind. Raises ``OSError`` at once: a file in the way, a read-only filesystem,
    no permission."""
    path = Path(path).absolute()
    if path.is_dir():
        _unlink(_write_temp(path / ".sdeval-write-check", b""))
        return
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{ancestor} is a file, not a folder", str(ancestor))
    os.rmdir(tempfile.mkdtemp(prefix=".sdeval-write-check.", dir=ancestor))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def safe_text(s: str) -> str:
    """A str that encodes to UTF-8: lone surrogates become backslash escapes.

    Undecodable bytes of a file name (``os.fsdecode``'s U+DC80..U+DCFF) come back as ``\\xe9``;
    any other lone surrogate (metadata JSON may hold ``\\ud800``) as ``\\ud800``.
    """
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def jsonable(value: Any) -> Any:
    """Plain JSON values: NaN → null, numpy scalars → Python, tuples → lists, safe strings."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {safe_text(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return jsonable(value.item())
    return value


def to_json(value: Any, indent: int | None = 2) -> str:
    return json.dumps(jsonable(value), indent=indent, ensure_ascii=False, allow_nan=False)


def json_bytes(value: Any) -> bytes:
    return (to_json(value) + "\n").encode("utf-8")


def jsonl_bytes(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(to_json(r, indent=None) + "\n" for r in rows).encode("utf-8")


def write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, json_bytes(value))


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    atomic_write_bytes(path, jsonl_bytes(rows))
