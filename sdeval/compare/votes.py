"""Human preference votes on a comparison's pairs: win rates, sign tests, Bradley–Terry.

``sdeval report RESULT_DIR --human-form`` writes ``human/index.html`` (a blind pairwise form) and
``human/pairs.json``, which says for each pair id which arm is on the left and which on the right;
the form itself shows no arm names. Raters' CSV exports (``rater,pair_id,choice,...``; ``choice`` 1 =
left, 2 = right, 0 = tie) come back here:

- per arm pair: wins, losses, ties; the win rate of ``arm`` over ``other`` counts a tie as half a
  win; its Wilson score interval (95 %) is on the decisive votes (wins / (wins + losses)); the sign
  test is the exact two-sided binomial test of the decisive votes against 1/2;
- with more than two arms, Bradley–Terry strengths (Hunter's MM algorithm, ties as half a win each
  way, log-strengths centred at 0) with percentile bootstrap intervals that resample the *prompts*
  (every vote on one prompt's pairs together), as every resampling in compare does.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from sdeval.core.errors import InputError

HUMAN_DIR = "human"
PAIRS_FILE = "pairs.json"
VOTE_COLUMNS = ("rater", "pair_id", "choice", "seconds", "voted_at")
BOOTSTRAP = 1000
Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval for a proportion; (None, None) without trials."""
    if n <= 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def sign_test(wins: int, losses: int) -> float | None:
    """Exact two-sided binomial test of wins vs losses against 1/2 (ties left out)."""
    n = wins + losses
    if n == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(wins, n, 0.5, alternative="two-sided").pvalue)


def read_votes(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Votes of one or more raters' CSVs; a file without a rater column is one rater named after it."""
    votes: list[dict[str, Any]] = []
    for path in paths:
        p = Path(path)
        try:
            with p.open(encoding="utf-8-sig", newline="") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or "pair_id" not in reader.fieldnames or "choice" not in reader.fieldnames:
                    raise InputError(f"{p}: a votes CSV needs the columns pair_id and choice (got "
                                     f"{', '.join(reader.fieldnames or []) or 'none'})")
                for i, row in enumerate(reader, start=2):
                    choice = (row.get("choice") or "").strip()
                    if choice not in ("0", "1", "2"):
                        raise InputError(f"{p}:{i}: choice must be 1 (left), 2 (right) or 0 (tie), got {choice!r}")
                    votes.append({"rater": (row.get("rater") or "").strip() or p.stem,
                                  "pair_id": (row.get("pair_id") or "").strip(), "choice": int(choice)})
        except OSError as exc:
            raise InputError(f"cannot read votes {p}: {exc.strerror or exc}") from exc
        except csv.Error as exc:
            raise InputError(f"{p}: not a CSV file: {exc}") from exc
    return votes


def _load_pairs(result_dir: Path) -> dict[str, dict[str, Any]]:
    path = result_dir / HUMAN_DIR / PAIRS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path} is missing: write the form first (sdeval report {result_dir} --human-form)") from exc
    except ValueError as exc:
        raise InputError(f"{path} is not JSON: {exc}") from exc
    return {str(p["id"]): p for p in data.get("pairs", [])}


def _outcomes(votes: Iterable[Mapping[str, Any]], pairs: Mapping[str, Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(winner, loser, tie, cluster) per vote; problems (unknown pair ids) listed."""
    out, problems = [], []
    for v in votes:
        pair = pairs.get(v["pair_id"])
        if pair is None:
            problems.append(f"vote by {v['rater']} on unknown pair {v['pair_id']!r} ignored")
            continue
        left, right = str(pair["left"]), str(pair["right"])
        if v["choice"] == 0:
            out.append({"a": left, "b": right, "tie": True, "cluster": pair.get("cluster"), "rater": v["rater"]})
        else:
            win, lose = (left, right) if v["choice"] == 1 else (right, left)
            out.append({"a": win, "b": lose, "tie": False, "cluster": pair.get("cluster"), "rater": v["rater"]})
    return out, problems


def pair_table(outcomes: Sequence[Mapping[str, Any]], baseline: str | None = None) -> list[dict[str, Any]]:
    """Per unordered arm pair (the non-baseline arm first): wins, losses, ties, win rate, Wilson, sign test."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for o in outcomes:
        a, b = o["a"], o["b"]
        key = tuple(sorted((a, b), key=lambda x: (x == baseline, x)))
        c = counts[key]  # type: ignore[index]
        if o["tie"]:
            c[2] += 1
        elif a == key[0]:
            c[0] += 1
        else:
            c[1] += 1
    rows = []
    for (arm, other), (w, l, t) in sorted(counts.items()):
        n = w + l + t
        lo, hi = wilson(w, w + l)
        rows.append({"arm": arm, "other": other, "wins": w, "losses": l, "ties": t, "votes": n,
                     "win_rate": (w + 0.5 * t) / n if n else None,
                     "decisive_win_rate": w / (w + l) if w + l else None,
                     "wilson_low": lo, "wilson_high": hi, "p_sign": sign_test(w, l)})
    return rows


def bradley_terry(outcomes: Sequence[Mapping[str, Any]], arms: Sequence[str], iterations: int = 500,
                  tol: float = 1e-10) -> dict[str, float]:
    """Log-strengths (centred at 0) by Hunter's MM updates; a tie is half a win for each side. A small
    prior (one half-win each way against every other arm) keeps an arm that never won finite."""
    import numpy as np

    idx = {a: i for i, a in enumerate(arms)}
    k = len(arms)
    wins = np.full((k, k), 0.5 / max(k - 1, 1))
    np.fill_diagonal(wins, 0.0)
    for o in outcomes:
        i, j = idx[o["a"]], idx[o["b"]]
        if o["tie"]:
            wins[i, j] += 0.5
            wins[j, i] += 0.5
        else:
            wins[i, j] += 1.0
    games = wins + wins.T
    p = np.ones(k)
    for _ in range(iterations):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        new = wins.sum(axis=1) / denom
        new /= np.exp(np.log(new).mean())
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    logs = np.log(p)
    logs -= logs.mean()
    return {a: float(logs[idx[a]]) for a in arms}


def bt_with_intervals(outcomes: Sequence[Mapping[str, Any]], arms: Sequence[str], resamples: int = BOOTSTRAP,
                      seed: int = 0) -> list[dict[str, Any]]:
    """Bradley–Terry strengths with 95 % percentile intervals from resampling prompt clusters."""
    import numpy as np

    point = bradley_terry(outcomes, arms)
    clusters: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for o in outcomes:
        clusters[o.get("cluster")].append(o)
    groups = list(clusters.values())
    rng = np.random.default_rng(seed)
    draws = {a: [] for a in arms}  # type: dict[str, list[float]]
    for _ in range(resamples):
        picked = rng.integers(0, len(groups), size=len(groups))
        sample = [o for g in picked for o in groups[g]]
        for a, v in bradley_terry(sample, arms, iterations=200, tol=1e-8).items():
            draws[a].append(v)
    rows = [{"arm": a, "strength": point[a], "low": float(np.percentile(draws[a], 2.5)),
             "high": float(np.percentile(draws[a], 97.5))} for a in arms]
    return sorted(rows, key=lambda r: -r["strength"])


def summarise(votes: Sequence[Mapping[str, Any]], pairs: Mapping[str, Mapping[str, Any]],
              arms: Sequence[str], baseline: str | None, resamples: int = BOOTSTRAP) -> dict[str, Any]:
    outcomes, problems = _outcomes(votes, pairs)
    used = sorted({o["a"] for o in outcomes} | {o["b"] for o in outcomes})
    order = [a for a in arms if a in used] + [a for a in used if a not in arms]
    human: dict[str, Any] = {
        "votes": len(outcomes), "ties": sum(1 for o in outcomes if o["tie"]),
        "raters": sorted({o["rater"] for o in outcomes}), "pairs": pair_table(outcomes, baseline),
        "method": "win rate counts a tie as half a win; Wilson 95 % interval and exact two-sided sign test on "
                  "decisive votes; Bradley-Terry (MM) with prompt-cluster bootstrap for more than two arms",
        "problems": problems,
    }
    if len(order) > 2 and outcomes:
        human["bradley_terry"] = bt_with_intervals(outcomes, order, resamples)
    return human


def add_votes(result_dir: str | Path, vote_files: Sequence[str | Path], resamples: int = BOOTSTRAP) -> dict[str, Any]:
    """Read the votes, put the human result into compare.json (key ``human``), and return it."""
    from sdeval.core.io import atomic_write_bytes, json_bytes

    result_dir = Path(result_dir)
    compare_path = result_dir / "compare.json"
    try:
        compare = json.loads(compare_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{compare_path}: not a compare result folder ({exc})") from exc
    pairs = _load_pairs(result_dir)
    votes = read_votes(vote_files)
    arms = [str(a["name"]) for a in compare.get("arms") or [] if isinstance(a, dict)]
    human = summarise(votes, pairs, arms, compare.get("baseline"), resamples)
    human["files"] = [str(p) for p in vote_files]
    compare["human"] = human
    atomic_write_bytes(compare_path, json_bytes(compare))
    return human
