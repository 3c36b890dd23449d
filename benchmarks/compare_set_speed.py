"""Cost of the set-metric permutation test of `sdeval compare` (FID, KID, CMMD on pooled features).

    python benchmarks/compare_set_speed.py                     # 2 x 1000 images, 2048-d, 1000 permutations
    python benchmarks/compare_set_speed.py --n 300 --fid-timed 20

Features are Inception-like (ReLU of correlated Gaussians), 2 seeds per prompt. For KID and CMMD
the full ``set_permutation_test`` (1,000 permutations + 2 x 200 subsamples) is timed. FID costs one
symmetric eigenvalue solve of an (n x n) matrix per subset and set, so its full test would take
minutes on 2 cores: ``--fid-timed`` permutations are timed through the same code path
(``PooledSetDistance.values`` on the permuted index sets) and the time for ``--permutations`` is
extrapolated linearly (the cost is exactly linear: every permutation is two same-sized subsets);
``--fid-full`` runs the whole FID test instead. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Callable

import numpy as np
from ratios import record


def features(n: int, dim: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(1234).standard_normal((dim, dim)) / np.sqrt(dim)
    latent = rng.standard_normal((n, dim)) * np.linspace(2.0, 0.2, dim)
    return np.maximum(latent @ mix + 0.3 + shift, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="images per arm")
    ap.add_argument("--dim", type=int, default=2048, help="Inception feature dimension")
    ap.add_argument("--clip-dim", type=int, default=768, help="CLIP embedding dimension (CMMD)")
    ap.add_argument("--ref", type=int, default=2000, help="reference images")
    ap.add_argument("--permutations", type=int, default=1000)
    ap.add_argument("--subsamples", type=int, default=200)
    ap.add_argument("--fid-timed", type=int, default=20, help="FID permutations actually timed")
    ap.add_argument("--fid-full", action="store_true", help="run the complete FID test instead")
    args = ap.parse_args()

    import scipy

    from sdeval.compare.set_tests import pooled_cmmd, pooled_fid, pooled_kid, set_permutation_test

    n, seeds = args.n, 2
    clusters = np.repeat(np.arange(n // seeds + 1), seeds)[:n]
    arm_idx, base_idx = np.arange(n), np.arange(n, 2 * n)
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"cpus {os.cpu_count()}; 2 x {n} images, {args.permutations} permutations, "
          f"{args.subsamples} subsamples\n")
    rows: list[tuple[str, str, float, float, float, str]] = []

    def clocked(fn: Callable[[], object]) -> tuple[float, float]:
        """(wall, CPU) seconds: on a shared machine the CPU time is the figure that does not
        depend on what else runs (single-threaded BLAS: they are equal on an idle core)."""
        w, c = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - w, time.process_time() - c

    pool = np.concatenate([features(n, args.dim, 0, 0.01), features(n, args.dim, 1)])
    ref = features(args.ref, args.dim, 2, 0.02)
    t0 = time.perf_counter()
    fid = pooled_fid(pool, ref.mean(axis=0), np.cov(ref, rowvar=False))
    t_pre = time.perf_counter() - t0
    t0 = time.perf_counter()
    fid.values(np.stack([arm_idx, base_idx]))
    t_pair = time.perf_counter() - t0
    if args.fid_full:
        t_test, c_test = clocked(lambda: set_permutation_test(
            fid, arm_idx, base_idx, clusters, n_permutations=args.permutations, n_subsamples=args.subsamples))
        how = "measured"
    else:
        rng = np.random.default_rng(0)
        k = args.fid_timed
        flips = (rng.random((k, clusters.max() + 1)) < 0.5)[:, clusters]
        sets = np.concatenate([np.where(flips, base_idx, arm_idx), np.where(flips, arm_idx, base_idx)])
        w_perm, c_perm = clocked(lambda: fid.values(sets))
        # the interval: 2 x n_subsamples pairs of sets, at n/2 and n/4 images
        w_half, c_half = clocked(lambda: fid.values(np.stack([np.arange(n // 2)] * 2)))
        w_q, c_q = clocked(lambda: fid.values(np.stack([np.arange(n // 4)] * 2)))
        t_test = w_perm / k * args.permutations + (w_half + w_q) * args.subsamples
        c_test = c_perm / k * args.permutations + (c_half + c_q) * args.subsamples
        how = f"extrapolated from {k} permutations + 1 subsample pair per size"
    rows.append((f"fid ({args.dim}-d)", how, t_pre, t_test, c_test, f"one FID pair {t_pair:.2f} s"))
    record("FID permutation test / one FID pair (time)", t_test / t_pair)

    t0 = time.perf_counter()
    kid = pooled_kid(pool, ref)
    t_pre = time.perf_counter() - t0
    w, c = clocked(lambda: set_permutation_test(kid, arm_idx, base_idx, clusters,
                                                n_permutations=args.permutations, n_subsamples=args.subsamples))
    rows.append((f"kid ({args.dim}-d)", "measured", t_pre, w, c, ""))
    record("KID permutation test (seconds)", w)

    clip = np.concatenate([features(n, args.clip_dim, 3, 0.01), features(n, args.clip_dim, 4)])
    clip /= np.linalg.norm(clip, axis=1, keepdims=True)
    cref = features(args.ref, args.clip_dim, 5)
    cref /= np.linalg.norm(cref, axis=1, keepdims=True)
    t0 = time.perf_counter()
    cmmd = pooled_cmmd(clip, cref)
    t_pre = time.perf_counter() - t0
    w, c = clocked(lambda: set_permutation_test(cmmd, arm_idx, base_idx, clusters,
                                                n_permutations=args.permutations, n_subsamples=args.subsamples))
    rows.append((f"cmmd ({args.clip_dim}-d)", "measured", t_pre, w, c, ""))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f}\n")
    print("| metric | how | precompute (s) | permutations + subsamples, wall (s) | same, CPU (s) | note |")
    print("|---|---|---:|---:|---:|---|")
    for name, how, pre, test, cpu, note in rows:
        print(f"| {name} | {how} | {pre:.2f} | {test:.1f} | {cpu:.1f} | {note} |")

if __name__ == "__main__":
    main()
