"""Calibration of `sdeval compare`'s statistics on simulated metric values with the real structure.

    python benchmarks/compare_calibration.py                  # 2,000 A/A + 1,000 power sims per row
    python benchmarks/compare_calibration.py --sims 500 --set-sims 50   # quicker

Per-image values imitate CLIP scores of two arms generated from the same prompts and seeds:
``--prompts`` prompts x ``--seeds`` seeds, a latent z = prompt effect (shared by both arms, sd 0.6)
+ seed effect (the same seed gives a similar image in both arms, sd 0.4) + an arm x prompt effect
(each checkpoint has its own strengths per prompt, sd ``--interaction``) + per-image noise (sd
0.5), mapped through the Beta(2, 5) quantile of its normal CDF to 0.22 + 0.3 q (mean ~0.31, sd
~0.05, right-skewed). A/A: both arms come from the same model, so every flag is a false
positive. Three columns: no arm x prompt effect, the default one, and a fifth of the prompts
with 2 seeds (a small run). Methods on the same data:

* ours: the Wilcoxon signed-rank p on per-prompt mean differences; the decision of
  ``decide`` (p < alpha and the BCa interval over prompts excluding 0); the BCa interval alone;
  the paired t-test on prompt means;
* naive: the paired t-test on images (ignores that seeds of one prompt are correlated), Welch's
  t-test on images (ignores the pairing), and "the difference of means is above 0.02".

Power: a planted effect (added to every arm value) equal to the minimum detectable difference at
80 % power of the paired t on prompt means (``mde_paired``, exact noncentral t) for the true SD
of the prompt differences (from 200,000 simulated prompts), and half of it (analytic power from
the same noncentral t). The set test: the label-swap permutation test and the subsampling
interval for FID and KID on small synthetic features (``--set-sims`` simulations,
``--set-permutations`` permutations each), A/A (false-positive rate, uniformity of p, how often
the interval excludes 0) and with a planted difference (power). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import scipy
import scipy.special
import scipy.stats
from ratios import record


def simulate(rng: np.random.Generator, sims: int, prompts: int, seeds: int, interaction: float,
             effect: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(sims, prompts * seeds) values of the arm and the baseline, prompt-major order."""
    shape = (sims, prompts, seeds)
    u = rng.normal(0.0, 0.6, (sims, prompts, 1))
    w = rng.normal(0.0, 0.4, shape)
    latent_sd = np.sqrt(0.6 ** 2 + 0.4 ** 2 + interaction ** 2 + 0.5 ** 2)

    def arm() -> np.ndarray:
        z = u + w + rng.normal(0.0, interaction, (sims, prompts, 1)) + rng.normal(0.0, 0.5, shape)
        q = scipy.special.betaincinv(2.0, 5.0, scipy.special.ndtr(z / latent_sd))
        return (0.22 + 0.3 * q).reshape(sims, -1)

    a, b = arm(), arm()
    return a + effect, b


def per_image_rows(rng: np.random.Generator, sims: int, prompts: int, seeds: int, interaction: float,
                   effect: float, alpha: float, resamples: int) -> dict[str, float]:
    from sdeval.compare.statistics import decide, paired_metric_test

    arm, base = simulate(rng, sims, prompts, seeds, interaction, effect)
    clusters = np.repeat(np.arange(prompts), seeds)
    flags = {k: 0 for k in ("wilcoxon", "decision", "bca", "t_prompts", "t_images", "welch", "rule")}
    signed = {"wilcoxon": 0, "decision": 0}
    for i in range(sims):
        r = paired_metric_test(arm[i], base[i], clusters, higher_is_better=True, alpha=alpha,
                               resamples=resamples, seed=i)
        d = decide(r.delta, r.ci_low, r.ci_high, r.p, alpha=alpha)
        flags["wilcoxon"] += r.p < alpha
        signed["wilcoxon"] += r.p < alpha and r.delta > 0
        flags["decision"] += d in ("improved", "regressed")
        signed["decision"] += d == "improved"
        flags["bca"] += not (r.ci_low <= 0.0 <= r.ci_high)
        flags["t_prompts"] += r.p_ttest < alpha
    flags["t_images"] = int((scipy.stats.ttest_rel(arm, base, axis=1).pvalue < alpha).sum())
    flags["welch"] = int((scipy.stats.ttest_ind(arm, base, axis=1, equal_var=False).pvalue < alpha).sum())
    flags["rule"] = int((np.abs(arm.mean(axis=1) - base.mean(axis=1)) > 0.02).sum())
    out = {k: v / sims for k, v in flags.items()}
    out["improved"] = signed["decision"] / sims
    return out


def true_cluster_sd(prompts_big: int, seeds: int, interaction: float) -> float:
    rng = np.random.default_rng(12345)
    arm, base = simulate(rng, 1, prompts_big, seeds, interaction)
    d = (arm - base).reshape(prompts_big, seeds).mean(axis=1)
    return float(d.std(ddof=1))


def set_rows(sims: int, permutations: int, alpha: float,
             spread: float = 0.0) -> dict[str, dict[str, float]]:
    """FID and KID permutation tests on small synthetic features; ``spread`` > 0 widens the arm's
    per-image noise by that fraction (a planted difference: the arm is further from the reference)."""
    from sdeval.compare.set_tests import pooled_fid, pooled_kid, set_permutation_test

    dim, prompts, seeds = 8, 30, 2
    out: dict[str, dict[str, float]] = {}
    res: dict[str, list[tuple[float, bool, bool]]] = {"fid": [], "kid": []}
    for s in range(sims):
        rng = np.random.default_rng(10_000 + s)
        ref = rng.standard_normal((200, dim))
        prompt = np.repeat(rng.standard_normal((prompts, dim)) * 0.7, seeds, axis=0)
        pool = np.concatenate([prompt + rng.standard_normal(prompt.shape) * (1.0 + spread),
                               prompt + rng.standard_normal(prompt.shape)])
        n = prompts * seeds
        cl = np.repeat(np.arange(prompts), seeds)
        for name, dist in (("fid", pooled_fid(pool, ref.mean(axis=0), np.cov(ref, rowvar=False))),
                           ("kid", pooled_kid(pool, ref))):
            r = set_permutation_test(dist, np.arange(n), np.arange(n, 2 * n), cl, n_permutations=permutations,
                                     seed=s, alpha=alpha, n_subsamples=200)
            res[name].append((r.p, r.ci_low <= 0.0 <= r.ci_high, r.p < alpha and r.ci_high < 0))
    for name, rows in res.items():
        p = np.array([x[0] for x in rows])
        out[name] = {"fpr": float(np.mean(p < alpha)), "coverage": float(np.mean([x[1] for x in rows])),
                     "regressed": float(np.mean([x[2] for x in rows])),
                     "ks_p": float(scipy.stats.kstest(p, "uniform").pvalue)}
    return out


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sims", type=int, default=2000, help="A/A simulations per scenario (power: half)")
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--interaction", type=float, default=0.3, help="sd of the arm x prompt effect")
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per test")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--set-sims", type=int, default=200)
    ap.add_argument("--set-permutations", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from sdeval.compare.statistics import _power_t, mde_paired

    t_start = time.perf_counter()
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"cpus {os.cpu_count()}; {args.prompts} prompts x {args.seeds} seeds, alpha {args.alpha}, "
          f"{args.resamples} BCa resamples\n")
    rng = np.random.default_rng(args.seed)
    se = np.sqrt(args.alpha * (1 - args.alpha) / args.sims)
    print(f"**(a) A/A false-positive rate**, {args.sims} simulations per column (Monte Carlo SE "
          f"{100 * se:.1f} points at 5 %); goal for ours: 3-7 %\n")
    small = max(args.prompts // 5, 3)
    scenarios = [(f"{args.prompts}x{args.seeds}, arm x prompt sd 0", args.prompts, args.seeds, 0.0),
                 (f"{args.prompts}x{args.seeds}, arm x prompt sd {args.interaction:g}", args.prompts, args.seeds,
                  args.interaction),
                 (f"{small}x2, arm x prompt sd {args.interaction:g}", small, 2, args.interaction)]
    aa = {name: per_image_rows(rng, args.sims, prompts, seeds, inter, 0.0, args.alpha, args.resamples)
          for name, prompts, seeds, inter in scenarios}
    labels = [("wilcoxon", "ours: Wilcoxon signed-rank on prompt means (p < alpha)"),
              ("decision", "ours: decision improved/regressed (p and BCa interval)"),
              ("bca", "ours: BCa interval over prompts excludes 0"),
              ("t_prompts", "ours (second opinion): paired t on prompt means"),
              ("t_images", "naive: paired t on images (seeds as independent)"),
              ("welch", "naive: Welch t on images (pairing ignored)"),
              ("rule", "naive: absolute difference of means > 0.02")]
    print("| method (columns: prompts x seeds) | " + " | ".join(sc[0] for sc in scenarios) + " |")
    print("|---|" + "---:|" * len(scenarios))
    for key, label in labels:
        print(f"| {label} | " + " | ".join(pct(aa[sc[0]][key]) for sc in scenarios) + " |")
    inter_name = scenarios[1][0]
    record("A/A false-positive rate, Wilcoxon on prompts", aa[inter_name]["wilcoxon"], "<= 0.07")
    record("A/A false-positive rate, decision", aa[inter_name]["decision"], "<= 0.07")

    sd = true_cluster_sd(200_000, args.seeds, args.interaction)
    mde = mde_paired(sd, args.prompts, alpha=args.alpha)
    sims_power = max(args.sims // 2, 1)
    print(f"\n**(b) power** ({inter_name}), {sims_power} simulations per row; true SD of prompt "
          f"differences {sd:.5f}, MDE at 80 % = {mde:.5f} (noncentral t, {args.prompts} prompts)\n")
    print("| planted effect | analytic (paired t) | paired t on prompts | Wilcoxon | decision improved "
          "| difference > 0.02 |")
    print("|---|---:|---:|---:|---:|---:|")
    for frac in (1.0, 0.5):
        eff = frac * mde
        pw = per_image_rows(rng, sims_power, args.prompts, args.seeds, args.interaction, eff, args.alpha,
                            args.resamples)
        analytic = _power_t(eff / sd, args.prompts, args.alpha)
        print(f"| {eff:.5f} ({frac:g} x MDE) | {pct(analytic)} | {pct(pw['t_prompts'])} | "
              f"{pct(pw['wilcoxon'])} | {pct(pw['improved'])} | {pct(pw['rule'])} |")
        if frac == 1.0:
            record("power at the MDE, Wilcoxon / analytic 0.8", pw["wilcoxon"] / analytic, ">= 0.9")

    if args.set_sims > 0:
        print(f"\n**(c) set metrics**: {args.set_sims} simulations per row, {args.set_permutations} "
              f"permutations and 2 x 200 subsamples each; 8-d features, 30 prompts x 2 seeds, 200 "
              f"reference images; planted: the arm's per-image noise 25 % wider\n")
        print("| metric | data | permutation p < alpha | KS test of p ~ U(0,1), p | interval excludes 0 "
              "| decision regressed |")
        print("|---|---|---:|---:|---:|---:|")
        for label, spread in (("A/A", 0.0), ("planted", 0.25)):
            sr = set_rows(args.set_sims, args.set_permutations, args.alpha, spread)
            for name, row in sr.items():
                ks = f"{row['ks_p']:.2f}" if spread == 0.0 else "–"
                print(f"| {name} | {label} | {pct(row['fpr'])} | {ks} | {pct(1 - row['coverage'])} | "
                      f"{pct(row['regressed'])} |")
    print(f"\n(total {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
