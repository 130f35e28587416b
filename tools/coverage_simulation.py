"""Do the rounds' 95% intervals cover the true ratio 95% of the time, on this VM's noise?

The noise is taken from real records (a run table or a release): for each model, the residuals
of its round medians (log tok/s minus the model's median, after removing each round's common
shift) and of its repetitions inside a round (log tok/s minus the cell's median). Simulated
experiments draw from those empirical residuals (with replacement), so tails and skew are the
VM's own; the "true" ratio is the population median of the per-round ratio, computed from a
large sample of the same model. For each number of rounds, the share of simulated experiments
whose interval covers it, per interval method (edgemoe.estimates.INTERVALS).

    python tools/coverage_simulation.py --runs results/runs.parquet --num olmoe-1b-7b --den llama-3.2-1b \\
        --rounds 8 15 30 --experiments 1000 [--repetitions 3]
"""
import argparse
import json

import numpy as np
import pandas as pd

from edgemoe.estimates import INTERVALS, halfwidth, paired_ratio, usable
from edgemoe.records import merge, read_jsonl, read_parquet


def load(path: str) -> pd.DataFrame:
    if path.endswith(".parquet"):
        return read_parquet(path).to_pandas()
    return merge([(path, read_jsonl(path))]).to_pandas()


def residuals(runs: pd.DataFrame, model: str, test: str | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(round-level residuals, repetition-level residuals, repetitions per cell) of one model's
    decode rows, on the log scale."""
    d = usable(runs, "bench", "tg")
    d = d[d["round"].notna()]
    if test:
        d = d[d["test"] == test]
    d = d.assign(log=np.log(d["tokens_per_s"].astype(float)))
    cell = d.groupby(["model", "round"])["log"].median().unstack("model")
    common = cell.sub(cell.median()).median(axis=1)  # each round's shift shared by every model
    m = d[d["model"] == model]
    if m.empty:
        raise SystemExit(f"no ok decode rows of {model!r} in rounds")
    per_round = m.groupby("round")["log"].median()
    between = (per_round - common.reindex(per_round.index)).to_numpy()
    between = between - np.median(between)
    within = (m["log"] - m.groupby("round")["log"].transform("median")).to_numpy()
    reps = int(m.groupby("round").size().median())
    return between, within[within != 0] if reps > 1 else np.zeros(1), reps


def simulate(rng, noise: dict, n_rounds: int, reps: int) -> dict[str, dict[int, np.ndarray]]:
    """One experiment: per arm, n_rounds rounds of `reps` values around speed 1 (log residuals)."""
    out = {}
    for arm, (between, within) in noise.items():
        b = rng.choice(between, n_rounds)
        w = rng.choice(within, (n_rounds, reps))
        out[arm] = {k: np.exp(b[k] + w[k]) for k in range(n_rounds)}
    return out


def paired_noise(runs: pd.DataFrame, num: str, den: str, test: str | None) -> np.ndarray:
    """The per-round log ratios num/den (round medians), centred on their median: the noise a paired
    estimator sees, with whatever the two models share inside a round (their correlation) kept."""
    d = usable(runs, "bench", "tg")
    d = d[d["round"].notna() & ((d["test"] == test) if test else True)]
    w = d.groupby(["round", "model"])["tokens_per_s"].median().unstack("model")[[num, den]].dropna()
    x = np.log(w[num] / w[den]).to_numpy()
    return x - np.median(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="results/runs.parquet or a release's runs.jsonl.gz")
    ap.add_argument("--num", required=True)
    ap.add_argument("--den", required=True)
    ap.add_argument("--test", default=None)
    ap.add_argument("--rounds", type=int, nargs="+", default=[8, 15, 30])
    ap.add_argument("--repetitions", type=int, default=None, help="default: as in the records")
    ap.add_argument("--experiments", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--independent", action="store_true",
                    help="draw each model's round residual independently (the default draws the pair's per-round "
                         "log ratio, keeping what the two share inside a round)")
    a = ap.parse_args()
    runs = load(a.runs)
    rng = np.random.default_rng(a.seed)
    if not a.independent:
        noise = paired_noise(runs, a.num, a.den, a.test)
        ones = {k: np.array([1.0]) for k in range(max(a.rounds))}

        def draw(n):  # true ratio 1: the population median of the draws
            r = np.exp(rng.choice(noise, n))
            return {k: np.array([r[k]]) for k in range(n)}, ones

        out = {"runs": a.runs, "num": a.num, "den": a.den, "mode": "paired", "rounds_seen": int(noise.size),
               "log_ratio_sd": float(np.std(noise))}
        truth = 1.0
    else:
        noise, reps_seen = {}, []
        for arm in (a.num, a.den):
            between, within, reps = residuals(runs, arm, a.test)
            noise[arm] = (between, within)
            reps_seen.append(reps)
        reps = a.repetitions or min(reps_seen)
        big = simulate(rng, noise, 200_000, reps)  # the population: the per-round ratio's median
        truth = float(np.median([np.median(big[a.num][k]) / np.median(big[a.den][k]) for k in range(200_000)]))

        def draw(n):
            sim = simulate(rng, noise, n, reps)
            return sim[a.num], sim[a.den]

        out = {"runs": a.runs, "num": a.num, "den": a.den, "repetitions": reps,
               "noise_log_sd": {arm: {"between_rounds": float(np.std(b)), "within_round": float(np.std(w))}
                                for arm, (b, w) in noise.items()},
               "true_ratio": truth}
    out |= {"experiments": a.experiments, "coverage": {}}
    for n in a.rounds:
        cov = {}
        for interval in INTERVALS:
            hits, widths = 0, []
            for _ in range(a.experiments):
                e = paired_ratio(*draw(n), interval)
                hits += e.lo <= truth <= e.hi
                widths.append(halfwidth(e))
            cov[interval] = {"coverage": hits / a.experiments, "median_halfwidth": float(np.median(widths))}
        out["coverage"][str(n)] = cov
        print(f"{n} rounds: " + ", ".join(f"{i} covers {c['coverage']:.3f} (half-width {c['median_halfwidth']:.4f})"
                                          for i, c in cov.items()), flush=True)
    print(json.dumps(out, indent=1))

if __name__ == "__main__":
    main()
