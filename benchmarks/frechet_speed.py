"""Fréchet distance (and optionally KID) speed: sdeval vs clean-fid, same inputs, one process.

    .venv/bin/python benchmarks/frechet_speed.py [--dim 2048] [--n 5000] [--repeats 3] [--kid [--kid-n 2000]]

Covariances come from Inception-like random features (ReLU of correlated Gaussians), so their
spectrum and conditioning look like real pool3 statistics. Each timing is the best of
``--repeats`` runs (the minimum is the least disturbed by other load on the machine). Prints
both times, the ratio and the relative difference of the values.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from typing import Any, Callable

import numpy as np
from ratios import record


def features(n: int, dim: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(1234).standard_normal((dim, dim)) / np.sqrt(dim)
    latent = rng.standard_normal((n, dim)) * np.linspace(2.0, 0.2, dim)
    return np.maximum(latent @ mix + 0.3 + shift, 0.0).astype(np.float32)  # Inception gives float32


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--n", type=int, default=5000, help="features per set")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kid", action="store_true", help="also time KID (100 subsets of 1000)")
    ap.add_argument("--kid-n", type=int, default=2000, help="features per set for KID")
    args = ap.parse_args()

    import scipy
    from cleanfid import fid as cleanfid_fid

    from sdeval.metrics.distances import FeatureStats, frechet_distance, kid

    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"cpus {os.cpu_count()}, dim {args.dim}, n {args.n}, best of {args.repeats}")
    f1 = features(args.n, args.dim, seed=0)
    f2 = features(args.n, args.dim, seed=1, shift=0.02)
    a, b = FeatureStats.from_features(f1), FeatureStats.from_features(f2)

    t_ours, v_ours = best_of(lambda: frechet_distance(a.mu, a.sigma, b.mu, b.sigma), args.repeats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy >= 1.16 deprecates clean-fid's sqrtm(disp=False)
        t_ref, v_ref = best_of(lambda: float(cleanfid_fid.frechet_distance(a.mu, a.sigma, b.mu,
                                                                            b.sigma)), args.repeats)
    print(f"frechet  sdeval   {t_ours:8.3f} s   value {v_ours:.10f}")
    print(f"frechet  cleanfid {t_ref:8.3f} s   value {v_ref:.10f}")
    print(f"frechet  speed-up x{t_ref / t_ours:.1f}   rel diff {abs(v_ours - v_ref) / abs(v_ref):.2e}")
    record(f"Fréchet distance {args.dim}-d, time: clean-fid / sdeval", t_ref / t_ours)

    if args.kid:
        f1, f2 = f1[:args.kid_n], f2[:args.kid_n]

        def ref_kid() -> float:
            np.random.seed(0)
            return float(cleanfid_fid.kernel_distance(f1, f2))

        t_ours, (k_ours, k_std) = best_of(lambda: kid(f1, f2, seed=0), args.repeats)
        t_ref, k_ref = best_of(ref_kid, args.repeats)
        print(f"kid      sdeval   {t_ours:8.3f} s   value {k_ours:.10e} (std {k_std:.2e}, float64)")
        print(f"kid      cleanfid {t_ref:8.3f} s   value {k_ref:.10e} (float32 arithmetic)")
        print(f"kid      speed-up x{t_ref / t_ours:.1f}   rel diff {abs(k_ours - k_ref) / abs(k_ref):.2e}")
        record(f"KID on {args.kid_n} features, time: clean-fid / sdeval", t_ref / t_ours)


if __name__ == "__main__":
    main()
