"""What the pipeline knows about one input before any metric runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from sdeval.inputs.metadata.types import GenerationMetadata


@dataclass(frozen=True)
class InputItem:
    """One image to evaluate, as discovery found it (nothing read yet)."""

    path: str
    #: values from a manifest row; they override embedded metadata.
    overrides: GenerationMetadata | None = None
    group: str | None = None


@dataclass(frozen=True)
class ImageRecord:
    """An input after its bytes were read: identity, real size, metadata, problems."""

    path: str
    sha256: str | None = None
    size_bytes: int | None = None
    format: str | None = None
    mode: str | None = None
    width: int | None = None
    height: int | None = None
    metadata: GenerationMetadata = field(default_factory=GenerationMetadata)
    group: str | None = None
    warnings: tuple[str, ...] = ()
    #: set when the image could not be read or decoded; the row's verdict is then ``error``.
    error: str | None = None
