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
    #: the ``[check.NAME]`` key that tunes each rule's threshold (default: the rule's metric);
    #: two rules on one metric (a block threshold and a review band) need two keys
    keys: tuple[str, ...] = ()

    def key(self, index: int) -> str:
        """The tuning key of rule ``index``."""
        return self.keys[index] if index < len(self.keys) and self.keys[index] else self.rules[index].metric

    def tuning_keys(self) -> list[str]:
        return list(dict.fromkeys(self.key(i) for i in range(len(self.rules))))


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
            # Missing when the graph resizes in pixel space after decoding (size_error checks it)
            _rule("size_mod8", ">", 0.0, "block", "size is not a multiple of 8", "resolution",
                  on_missing="ignore"),
        ),
    ),
    # -- nsfw: block above Yahoo's own "unsafe" level (0.8); the band between 0.5 and 0.8 (where
    # open_nsfw puts SFW illustrations in dark or off-shoulder clothes as well as suggestive ones)
    # is sent back with a reprompt, not blocked. Measured on 87 labelled real outputs:
    # benchmarks/nsfw/ and docs/checks.md.
    "nsfw": Check(
        "nsfw",
        "open_nsfw probability (Yahoo, ONNX, offline): > 0.8 (Yahoo's 'unsafe') blocks; "
        "0.5-0.8 is a review band that reprompts instead of blocking",
        (
            _rule("nsfw", ">", 0.8, "block", "unsafe", "nsfw"),
            _rule("nsfw", ">", 0.5, "reprompt", "possibly NSFW (review band)", "nsfw"),
        ),
        keys=("nsfw", "nsfw_review"),
    ),
    # -- artifacts: thresholds calibrated on the calibration half of benchmarks/artifacts
    # (python benchmarks/artifacts/run.py --calibrate); accuracy on the held-out half in
    # benchmarks/artifacts/RESULTS.md; what each number means in docs/checks.md.
    "blur": Check(
        "blur",
        "soft or motion-blurred images: edge width at 512 px, overall and along one direction",
        (
            _rule("blur", ">", 1.05, "reseed", "blurry", "blur"),
            _rule("motion_blur", ">", 0.27, "reseed", "motion blur", "blur"),
        ),
    ),
    "low_contrast": Check(
        "low_contrast",
        "washed-out images (e.g. a missing or wrong VAE): narrow 1st-99th percentile luma range",
        (_rule("contrast", "<", 0.36, "reseed", "low contrast / washed out", "low_contrast"),),
    ),
    "exposure": Check(
        "exposure",
        "under- and overexposure: nothing near white (underexposed) or many blown highlights",
        (
            _rule("white_point", "<", 0.57, "reseed", "underexposed (no highlights)", "exposure"),
            _rule("blown_highlights", ">", 0.2, "reseed", "blown highlights", "exposure"),
        ),
    ),
    "oversaturation": Check(
        "oversaturation",
        "burned colours of a too-high CFG: strongly chromatic pixels clipped at 0 or 255",
        (_rule("clipped_colour", ">", 0.18, "reseed", "oversaturated / burned", "oversaturation"),),
    ),
    "noise": Check(
        "noise",
        "residual colour noise of too few sampling steps (wavelet sigma at 512 px)",
        (_rule("noise", ">", 3.4, "reseed", "noisy", "noise"),),
    ),
    "latent_grid": Check(
        "latent_grid",
        "the 8-px latent grid of a bad VAE decode and straight VAE tiling seams (not measured "
        "for JPEG/WebP files, whose blocks form the same lattice)",
        (
            _rule("latent_grid", ">", 29.0, "reseed", "8-px latent grid", "latent_grid",
                  on_missing="ignore"),
            _rule("tile_seam", ">", 0.22, "reseed", "tiling seam", "latent_grid", on_missing="ignore"),
        ),
    ),
    "duplication": Check(
        "duplication",
        "tiled or repeated content (self-similarity at a large shift), as above the native size",
        (_rule("duplication", ">", 0.72, "reseed", "repeated / tiled content", "duplication"),),
    ),
    "face": Check(
        "face",
        "a found face that is blurred (OpenCV Haar cascade; Laplacian variance of the face box at "
        "128 px); images without a face pass (the portrait preset adds face count and size)",
        (
            _rule("face_sharpness", "<", 25.0, "restore_face", "blurred face", "face",
                  on_missing="ignore"),
        ),
        extra="faces",
    ),
}

#: family name -> member checks
FAMILIES: dict[str, tuple[str, ...]] = {
    "offline": ("blank", "resolution", "nsfw"),
    "artifacts": ("blank", "blur", "low_contrast", "exposure", "oversaturation", "noise",
                  "latent_grid", "duplication"),
}


def expand(names: list[str] | tuple[str, ...]) -> list[str]:
    """Family names expanded to their checks, order kept, duplicates dropped."""
    out: list[str] = []
    for name in names:
        for member in FAMILIES.get(name, (name,)):
            if member not in out:
                out.append(member)
    return out
