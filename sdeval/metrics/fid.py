"""FID, KID, CMMD and CLIP-FID: distances between a generated set and a reference set.

* ``fid``: Fréchet distance of clean-fid Inception pool3 statistics (float64, exact fast trace).
  On N <= 2048 images it warns (rank-deficient covariance, strong small-sample bias).
* ``kid``: clean-fid's KID (unbiased cubic-polynomial MMD² over random subsets, subset size
  capped at the smaller set), with the std over subsets; seeded.
* ``cmmd``: CLIP ViT-L/14@336 embeddings, RBF kernel σ = 10, unbiased MMD² × 1000.
* ``clip_fid``: Fréchet distance of the same CLIP embeddings (one CLIP forward serves both).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sdeval.metrics.distances import frechet_distance, kid, mmd_rbf, small_n_warning
from sdeval.metrics.set_base import FeatureSet, SetMetric, SetValue


def _sizes(generated: FeatureSet, reference: FeatureSet) -> dict[str, int]:
    return {"n_generated": generated.n, "n_reference": reference.n}


def _require(metric: str, side: str, fs: FeatureSet, need: int = 2) -> None:
    from sdeval.core.errors import InputError

    if fs.n < need and not (fs.fixed is not None and fs.n == 0):
        raise InputError(f"{metric} needs at least {need} {side} images with features, got {fs.n}")


def _frechet(name: str, generated: FeatureSet, reference: FeatureSet) -> SetValue:
    _require(name, "generated", generated)
    _require(name, "reference", reference)
    g, r = generated.finalize_stats(), reference.finalize_stats()
    value = frechet_distance(g.mu, g.sigma, r.mu, r.sigma)
    smallest = min(g.n, r.n) if r.n > 0 else g.n  # 0: published statistics that do not say their N
    warnings = tuple(w for w in (small_n_warning(smallest, g.dim),) if w)
    return SetValue(name, value, {**_sizes(generated, reference), "dim": g.dim,
                                  "small_n": bool(warnings)}, warnings)


class Fid(SetMetric):
    name: ClassVar[str] = "fid"
    feature: ClassVar[str] = "inception"
    keeps: ClassVar[tuple[str, ...]] = ("stats",)
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, None)
    unit: ClassVar[str] = "Fréchet distance"
    description: ClassVar[str] = ("Fréchet Inception Distance (clean-fid's Inception and resize); "
                                  "< 50 against real images is the usual bar; needs >> 2048 images")
    option_names: ClassVar[tuple[str, ...]] = ("fid_mode",)

    def value(self, generated: FeatureSet, reference: FeatureSet) -> SetValue:
        return _frechet(self.name, generated, reference)

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "formula": "||mu1-mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2), float64",
                "covariance": "unbiased (N-1), as clean-fid"}


class Kid(SetMetric):
    name: ClassVar[str] = "kid"
    feature: ClassVar[str] = "inception"
    keeps: ClassVar[tuple[str, ...]] = ("bank",)
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (None, None)
    unit: ClassVar[str] = "MMD² (polynomial kernel)"
    description: ClassVar[str] = "Kernel Inception Distance (clean-fid's estimator); unbiased, usable on small sets"
    option_names: ClassVar[tuple[str, ...]] = ("fid_mode", "kid_subsets", "kid_subset_size", "kid_seed")

    def _params(self) -> tuple[int, int, int]:
        o = self.options
        return (int(o.get("kid_subsets") or 100), int(o.get("kid_subset_size") or 1000),
                int(o.get("kid_seed") or 0))

    def value(self, generated: FeatureSet, reference: FeatureSet) -> SetValue:
        _require(self.name, "generated", generated)
        _require(self.name, "reference", reference)
        subsets, size, seed = self._params()
        mean, std = kid(generated.bank(), reference.bank(), num_subsets=subsets, subset_size=size, seed=seed)
        used = min(generated.n, reference.n, size)
        warnings = ()
        if used < size:
            warnings = (f"KID subset size capped at {used} (the smaller set) instead of {size}",)
        return SetValue(self.name, mean, {"std": std, "subsets": subsets, "subset_size": used, "seed": seed,
                                          **_sizes(generated, reference)}, warnings)

    def protocol(self) -> dict[str, Any]:
        subsets, size, seed = self._params()
        return {**super().protocol(), "kernel": "(x.y/d + 1)^3", "subsets": subsets,
                "max_subset_size": size, "seed": seed, "estimator": "unbiased MMD², clean-fid sampling"}


class Cmmd(SetMetric):
    name: ClassVar[str] = "cmmd"
    feature: ClassVar[str] = "clip_image_set"
    keeps: ClassVar[tuple[str, ...]] = ("bank",)
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (None, None)
    unit: ClassVar[str] = "MMD² x 1000 (RBF)"
    description: ClassVar[str] = "CMMD: CLIP ViT-L/14@336 embeddings, RBF sigma 10, unbiased MMD² x 1000"
    option_names: ClassVar[tuple[str, ...]] = ("cmmd_clip_model", "cmmd_clip_pretrained", "cmmd_sigma",
                                               "cmmd_biased")

    def _params(self) -> tuple[float, bool]:
        return float(self.options.get("cmmd_sigma") or 10.0), not bool(self.options.get("cmmd_biased"))

    def value(self, generated: FeatureSet, reference: FeatureSet) -> SetValue:
        _require(self.name, "generated", generated)
        _require(self.name, "reference", reference)
        sigma, unbiased = self._params()
        v = mmd_rbf(generated.bank(), reference.bank(), sigma=sigma, scale=1000.0, unbiased=unbiased)
        return SetValue(self.name, v, {"sigma": sigma, "unbiased": unbiased, **_sizes(generated, reference)})

    def protocol(self) -> dict[str, Any]:
        sigma, unbiased = self._params()
        return {**super().protocol(), "kernel": f"exp(-||x-y||^2 / (2 * {sigma}^2))", "scale": 1000,
                "estimator": "unbiased" if unbiased else "biased (google-research reference code)"}


class ClipFid(SetMetric):
    name: ClassVar[str] = "clip_fid"
    feature: ClassVar[str] = "clip_image_set"
    keeps: ClassVar[tuple[str, ...]] = ("stats",)
    higher_is_better: ClassVar[bool] = False
    range: ClassVar[tuple[float | None, float | None]] = (0.0, None)
    unit: ClassVar[str] = "Fréchet distance (CLIP)"
    description: ClassVar[str] = "Fréchet distance of L2-normalised CLIP embeddings (the CMMD backbone)"
    option_names: ClassVar[tuple[str, ...]] = ("cmmd_clip_model", "cmmd_clip_pretrained")

    def value(self, generated: FeatureSet, reference: FeatureSet) -> SetValue:
        return _frechet(self.name, generated, reference)
