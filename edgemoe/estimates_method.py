"""Estimates of the study's own method (prompt cells, edgemoe/prompt_cells.py), part of the one
estimates layer (edgemoe/estimates.py: its row shape, interval methods and METHODS):

- method agreement: prompt-run decode tok/s over llama-bench decode tok/s of the same model file,
  paired inside rounds (`method_ratios`);
- per-token latency: time to first token (the footer's prompt eval time) and inter-token latency
  percentiles p50/p90/p99, from the prompt runs' token arrival gaps and from the profiling
  binary's per-step decode times (`latency`).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from edgemoe import estimates as E
from edgemoe.stats import N_BOOT, NAN, SEED, Estimate, ratio_ci

QUANTILES = (50, 90, 99)
BLOCK = 8  # decode steps per resampled block when there is one run only
KEYS = ["device", "engine", "quant", "weights_source", "model"]


def method_ratios(runs: pd.DataFrame, interval: str = "auto") -> pd.DataFrame:
    """Per model file (device, engine, quant, weights, model), each prompt test and each llama-bench
    decode test: prompt-run decode tok/s / llama-bench decode tok/s; rounds: median over rounds of
    the ratio of the two cells' round medians (edgemoe.estimates.paired_ratio), block: ratio of medians."""
    prompt, bench = E.usable(runs, "prompt", "tg"), E.usable(runs, "bench", "tg")
    rows = []
    for key, p in prompt.groupby(KEYS, sort=True):
        at = dict(zip(KEYS, key))
        b = bench.loc[(bench[KEYS] == pd.Series(at)).all(axis=1)]
        for ptest, pg in p.groupby("test", sort=True):
            for btest, bg in b.groupby("test", sort=True):
                if E.in_rounds(pg) and E.in_rounds(bg):
                    num, den = E._by_round(pg[pg["round"].notna()]), E._by_round(bg[bg["round"].notna()])
                    iv = E.resolve_interval(interval, len(set(num) & set(den)))
                    e, method, design = E.paired_ratio(num, den, iv), f"rounds-ratio/{iv}", "rounds"
                else:
                    e, method, design = ratio_ci(pg["tokens_per_s"], bg["tokens_per_s"]), "block-ratio", "block"
                group = {**at, "test": ptest}
                rows.append(E._row("method_ratio", [group[k] for k in E.GROUP], E.GROUP, at["model"],
                                   f"llama-bench {btest}", "tg", e, method, design))
    return pd.DataFrame(rows, columns=E.COLUMNS)


def _pooled_quantile(runs_gaps: list[np.ndarray], q: float, n_boot: int = N_BOOT, seed: int = SEED) -> Estimate:
    """The q-th percentile of all gaps pooled, with a 95% bootstrap interval that resamples whole
    runs (a run's gaps are correlated, so resampling gaps alone would be too narrow); a single run
    (a profile cell) is resampled in blocks of BLOCK consecutive steps instead."""
    runs_gaps = [g for g in runs_gaps if g.size]
    if not runs_gaps:
        return NAN
    value = float(np.percentile(np.concatenate(runs_gaps), q))
    if len(runs_gaps) == 1:
        runs_gaps = [b for b in np.array_split(runs_gaps[0], max(runs_gaps[0].size // BLOCK, 1))]
    if len(runs_gaps) < 2:
        return Estimate(value, -np.inf, np.inf, 1)
    rng = np.random.default_rng(seed)
    boot = [np.percentile(np.concatenate([runs_gaps[i] for i in rng.integers(0, len(runs_gaps), len(runs_gaps))]), q)
            for _ in range(n_boot // 4)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Estimate(value, float(lo), float(hi), len(runs_gaps))


def run_gaps(d: pd.DataFrame) -> list[np.ndarray]:
    """One array of inter-token gaps (ms) per run: prompt rows' token_gaps_ms; profile rows' decode
    step times (one cell = one run)."""
    if d["kind"].iloc[0] == "prompt":
        return [np.asarray(json.loads(g), dtype=float) for g in d["token_gaps_ms"].dropna()]
    return [g["time_ns"].to_numpy(dtype=float) / 1e6 for _, g in d.groupby("cell_id")]


def latency(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model and source (prompt cells: test cli-...; profile cells: test profile): time to
    first token (prompt cells: median over runs of the footer's prompt eval time) and inter-token
    latency percentiles of the pooled gaps."""
    rows = []
    parts = [E.usable(runs, "prompt", "tg"), E.usable(runs, "profile", "tg")]
    for d in (p for p in parts if len(p)):
        keys = [k for k in E.GROUP if k in d.columns]
        for key, g in d.groupby(keys + ["model"], sort=True):
            *gkey, model = key
            if g["kind"].iloc[0] == "prompt":
                ttft = E.medians(g, "prompt", "ttft_ms", "ttft_ms", "auto")
                rows += ttft.to_dict("records")
            per_run = run_gaps(g)
            for q in QUANTILES:
                e = _pooled_quantile(per_run, q)
                rows.append(E._row(f"itl_p{q}_ms", gkey, keys, model, None, "tg", e, "runs-pooled-quantile",
                                   "rounds" if E.in_rounds(g) else "block"))
    return pd.DataFrame(rows, columns=E.COLUMNS)
