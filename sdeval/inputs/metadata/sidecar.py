"""Caption sidecars (kohya-ss training sets): ``image.txt`` or ``image.caption`` next to the image.

Training sets and hand-made folders carry no embedded metadata; their caption file is the only
prompt there is, so it is read when nothing embedded gave one.
"""

from __future__ import annotations

import os

from sdeval.inputs.metadata.types import GenerationMetadata

SIDECAR_EXTENSIONS = (".txt", ".caption")


def sidecar_paths(image_path: str) -> list[str]:
    """Candidate caption files for an image, in the order they are tried."""
    stem, _ = os.path.splitext(image_path)
    return [stem + ext for ext in SIDECAR_EXTENSIONS]


def read_sidecar(image_path: str, *, max_bytes: int = 1 << 20) -> GenerationMetadata:
    """The first non-empty caption file's text as the prompt; source ``none`` when there is none."""
    warnings: list[str] = []
    for candidate in sidecar_paths(image_path):
        if candidate == image_path or not os.path.isfile(candidate):
            continue
        try:
            size = os.path.getsize(candidate)
            if size > max_bytes:
                warnings.append(f"sidecar: {os.path.basename(candidate)} is {size} bytes, over the "
                                f"{max_bytes}-byte limit; not read")
                continue
            with open(candidate, "rb") as handle:
                text = handle.read(max_bytes).decode("utf-8-sig", "replace").strip()
        except OSError as exc:
            warnings.append(f"sidecar: cannot read {os.path.basename(candidate)} ({exc.strerror})")
            continue
        if text:
            return GenerationMetadata(source="sidecar", prompt=text, warnings=tuple(warnings),
                                      raw={"sidecar": text})
    return GenerationMetadata(source="none", warnings=tuple(warnings))
