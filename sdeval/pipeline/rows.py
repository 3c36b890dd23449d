"""The row the pipeline makes for each input: identity and metadata columns, then one per metric."""

from __future__ import annotations

from typing import Any

from sdeval.inputs.record import ImageRecord

SCHEMA_VERSION = 1

ID_COLUMNS = ("path", "sha256", "size_bytes", "format", "mode", "width", "height")
META_COLUMNS = ("source", "prompt", "negative_prompt", "seed", "requested_width", "requested_height",
                "base_width", "base_height", "steps", "cfg", "sampler", "scheduler", "model", "model_hash",
                "vae", "loras")


def record_row(rec: ImageRecord) -> dict[str, Any]:
    """The identity and metadata columns of a results row."""
    md = rec.metadata
    return {
        "path": rec.path, "sha256": rec.sha256, "size_bytes": rec.size_bytes, "format": rec.format,
        "mode": rec.mode, "width": rec.width, "height": rec.height,
        "source": md.source, "prompt": md.prompt, "negative_prompt": md.negative_prompt, "seed": md.seed,
        "requested_width": md.output_width, "requested_height": md.output_height,
        "base_width": md.width, "base_height": md.height, "steps": md.steps, "cfg": md.cfg,
        "sampler": md.sampler, "scheduler": md.scheduler, "model": md.model, "model_hash": md.model_hash,
        "vae": md.vae, "loras": [lora.as_dict() for lora in md.loras],
        "group": rec.group, "duplicate_of": None,
        "warnings": list(rec.warnings), "error": rec.error,
    }


class DuplicateMarker:
    """Marks rows whose file bytes (sha256) were already seen: ``duplicate_of`` = the first one's path.

    The one implementation: the pipeline marks rows as it yields them, and a sharded run marks
    the gathered rows again with a fresh marker (a shard cannot see the other shards' files).
    """

    def __init__(self) -> None:
        self._first: dict[str, str] = {}
        self.count = 0

    def mark(self, row: dict[str, Any]) -> None:
        sha = row.get("sha256")
        row["duplicate_of"] = None
        if not sha:
            return
        if sha in self._first:
            row["duplicate_of"] = self._first[sha]
            self.count += 1
        else:
            self._first[sha] = row["path"]


def mark_duplicates(rows: list[dict[str, Any]]) -> int:
    """Mark every row of ``rows`` (in order); returns how many are duplicates."""
    marker = DuplicateMarker()
    for row in rows:
        marker.mark(row)
    return marker.count
