"""Named checks: bundles of rules with calibrated default thresholds.

``--check NAME`` (or ``checks = [...]`` in a policy) adds a check's rules; ``[gate.check.NAME]``
tunes its thresholds (``METRIC = value``) and its ``action``. A family name (``artifacts``)
expands to all its checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdeval.gates.rules import Rule


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    rules: tuple[Rule, ...]
    #: a pip extra needed by the check's metrics (named in the error when it is missing)
    extra: str | None = None


def _rule(metric: str, op: str, threshold: float, action: str, why: str, check: str,
          on_missing: str = "fire") -> Rule:
    return Rule(metric=metric, op=op, threshold=threshold, action=action, why=why,
                origin=f"check {check}", on_missing=on_missing)


CHECKS: dict[str, Check] = {
    "blank": Check(
        "blank",
        "near-constant or all-black images (NaN VAE decodes, safety-checker blackouts)",
        (
            _rule("pixel_std", "<", 2.0, "reseed", "near-constant image", "blank"),
            _rule("pixel_max", "<", 8.0, "reseed", "all-black image", "blank"),
        ),
    ),
    "resolution": Check(
        "resolution",
        "actual size vs the requested size (metadata or --resolution), and multiple of 8; "
        "a wrong size is a pipeline problem a new seed cannot fix, so it blocks for review",
        (
            _rule("size_error", ">", 0.0, "block", "size differs from the requested size",
                  "resolution", on_missing="ignore"),
            _rule("size_mod8", ">", 0.0, "block", "size is not a multiple of 8", "resolution"),
        ),
    ),
    "nsfw": Check(
        "nsfw",
        "open_nsfw probability (Yahoo, ONNX, offline); < 0.2 safe, > 0.8 unsafe",
        (_rule("nsfw", ">", 0.5, "block", "likely NSFW", "nsfw"),),
    ),
}

#: family name -> member checks
FAMILIES: dict[str, tuple[str, ...]] = {
    "offline": ("blank", "resolution", "nsfw"),
}


def expand(names: list[str] | tuple[str, ...]) -> list[str]:
    """Family names expanded to their checks, order kept, duplicates dropped."""
    out: list[str] = []
    for name in names:
        for member in FAMILIES.get(name, (name,)):
            if member not in out:
                out.append(member)
    return out
