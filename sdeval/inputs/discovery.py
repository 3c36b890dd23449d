"""Turn what the user named (folders, globs, files, manifests) into a list of inputs.

Folders are walked recursively in a stable (sorted) order. Files with an image extension become
inputs (even if their content later proves not to be an image: that is an error *row*, so
nothing goes unnoticed); everything else in a folder is skipped and counted.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from sdeval.core.errors import InputError
from sdeval.inputs.manifest import MANIFEST_SUFFIXES, read_manifest
from sdeval.inputs.record import InputItem

#: extensions that become inputs; the decoder then accepts PNG, JPEG and WebP content only
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif"})
#: companion files that are expected next to images and are not worth a "skipped" count
SIDECAR_SUFFIXES = frozenset({".txt", ".caption"})
#: written into every sdeval result folder: discovery never walks into one, so a result folder
#: (attempts, quarantine) inside the input folder is not evaluated again on the next run
RESULT_MARKER = ".sdeval-results"


@dataclass(frozen=True)
class Discovery:
    items: tuple[InputItem, ...]
    #: files seen in folders that are not images, by suffix (sidecars not counted)
    skipped: dict[str, int] = field(default_factory=dict)
    manifests: tuple[str, ...] = ()

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def discover(paths: list[str] | tuple[str, ...]) -> Discovery:
    """Expand ``paths``. Raises InputError when a named path does not exist or nothing is found."""
    items: list[InputItem] = []
    skipped: dict[str, int] = {}
    manifests: list[str] = []
    seen: set[str] = set()

    def add(item: InputItem) -> None:
        key = os.path.normpath(item.path)
        if key not in seen:
            seen.add(key)
            items.append(item)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for child in _walk(p):
                suffix = child.suffix.lower()
                if suffix in IMAGE_SUFFIXES:
                    add(InputItem(path=str(child)))
                elif suffix not in SIDECAR_SUFFIXES:
                    skipped[suffix or "(none)"] = skipped.get(suffix or "(none)", 0) + 1
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            manifests.append(str(p))
            for item in read_manifest(p):
                add(item)
        elif p.is_file():
            add(InputItem(path=str(p)))
        elif glob.has_magic(raw):
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                raise InputError(f"no files match the pattern {raw!r}")
            for m in matches:
                if Path(m).is_file() and Path(m).suffix.lower() in IMAGE_SUFFIXES:
                    add(InputItem(path=m))
        else:
            raise InputError(f"no such file or directory: {raw}")
    if not items:
        where = ", ".join(paths)
        extra = f" ({sum(skipped.values())} non-image files skipped)" if skipped else ""
        raise InputError(f"no images found in {where}{extra}; sdeval evaluates .png, .jpg, .jpeg and .webp files")
    return Discovery(items=tuple(items), skipped=skipped, manifests=tuple(manifests))


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        if RESULT_MARKER in filenames and Path(dirpath) != root:
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name
