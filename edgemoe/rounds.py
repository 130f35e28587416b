"""Rounds, paired ratios and adaptive stopping: precision on noisy, drifting machines.

A block design (all repetitions of model A, then all of B) turns drift (heat, load, clock
frequency) into bias: A's numbers come from a cooler machine than B's. Here a device's cells run
in *rounds*: each round runs every (model, quant, test) cell once, `repetitions` times, in an order
shuffled per round from a recorded seed. A ratio between two models is computed inside each round
(both measured minutes apart on the same machine state) and summarised as the median over rounds,
with a percentile-bootstrap interval that resamples rounds. After each round `decide` says whether
every headline ratio is precise enough, or the time budget or the round cap is reached.

Order modes: `shuffled` draws a fresh permutation for every round from (seed, round); `balanced`
(default) draws one for rounds 2j and runs it reversed in round 2j+1, so a monotone drift favours
each model of a pair equally often (ABBA counterbalancing) and the median of paired ratios sits
on the truth rather than on the side of whichever order came up more often.

No Snakemake here: workflow/rules/rounds.smk wires these functions into the DAG.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from edgemoe.stats import N_BOOT, SEED, Estimate, median_ci, median_ci_exact

ORDER_MODES = ("balanced", "shuffled")
STOP_REASONS = ("target met", "budget spent", "max rounds")
GROUP = ["device", "engine", "quant", "test"]


# ---- order and chain -------------------------------------------------------------------------
def cell_key(model: str, quant: str, test: str) -> str:
    """The name of a (model, quant, test) cell inside a round (model ids carry no '/')."""
    return f"{model}/{quant}/{test}"


def split_key(key: str) -> tuple[str, str, str]:
    model, quant, test = key.split("/")
    return model, quant, test


def round_order(cells: Sequence[str], seed: int, k: int, mode: str = "balanced") -> list[str]:
    """The order in which round k runs `cells`: deterministic in (cells, seed, k, mode).

    The permutation is drawn from numpy's PCG64 seeded with [seed, k] (balanced: [seed, k // 2],
    reversed for odd k), applied to the cells sorted, so the config's listing order does not
    matter."""
    if mode not in ORDER_MODES:
        raise ValueError(f"order mode {mode!r}; allowed: {', '.join(ORDER_MODES)}")
    if k < 0:
        raise ValueError(f"round index must be >= 0, got {k}")
    base = sorted(cells)
    if len(set(base)) != len(base):
        raise ValueError("cells must be unique")
    draw = k // 2 if mode == "balanced" else k
    perm = np.random.default_rng([int(seed), int(draw)]).permutation(len(base))
    order = [base[i] for i in perm]
    if mode == "balanced" and k % 2 == 1:
        order.reverse()
    return order


@dataclass(frozen=True)
class After:
    """What a round cell waits for: a cell of the same round, or (cell None) a round's decision."""

    round: int
    cell: str | None


def predecessor(cells: Sequence[str], seed: int, k: int, cell: str, mode: str = "balanced") -> After | None:
    """The job that must finish before `cell` of round k starts: the cell before it in round k's
    order; for round k's first cell the decision of round k-1; nothing for round 0's first cell."""
    order = round_order(cells, seed, k, mode)
    if cell not in order:
        raise ValueError(f"{cell!r} is not one of the round's cells ({', '.join(order)})")
    i = order.index(cell)
    if i > 0:
        return After(k, order[i - 1])
    return After(k - 1, None) if k > 0 else None


def chain(cells: Sequence[str], seed: int, k: int, mode: str = "balanced") -> list[tuple[str, After | None]]:
    """Round k's cells in run order, each with its predecessor (see `predecessor`)."""
    return [(c, predecessor(cells, seed, k, c, mode)) for c in round_order(cells, seed, k, mode)]


def last_cell(cells: Sequence[str], seed: int, k: int, mode: str = "balanced") -> str:
    return round_order(cells, seed, k, mode)[-1]


# ---- pairs -----------------------------------------------------------------------------------
def headline_pairs(families: dict[str, str], baseline: str, which: str = "all") -> list[tuple[str, str]]:
    """(MoE, dense) pairs in the study's order: for each MoE (in `families`' order) the same-active
    baseline first, then the other dense models. which='baseline' keeps only the first."""
    moes = [m for m, f in families.items() if f == "moe"]
    dense = [m for m, f in families.items() if f != "moe"]
    dense = ([baseline] if baseline in dense else []) + [d for d in dense if d != baseline]
    if which not in ("all", "baseline"):
        raise ValueError(f"pairs {which!r}; allowed: all, baseline")
    return [(m, d) for m in moes for d in (dense[:1] if which == "baseline" else dense)]


# ---- statistics ------------------------------------------------------------------------------
def _ok(df: pd.DataFrame, phase: str | None) -> pd.DataFrame:
    if "round" not in df.columns:
        raise ValueError("run-table rows need a 'round' column")
    d = df[(df["status"] == "ok") & df["round"].notna()]
    if phase is not None:
        d = d[d["phase"] == phase]
    return d


def per_round(df: pd.DataFrame, phase: str | None = None) -> pd.DataFrame:
    """One row per (device, engine, model, quant, test, phase, round): the median tok/s over the
    round cell's repetitions."""
    d = _ok(df, phase)
    keys = [k for k in GROUP if k in d.columns] + ["model", "phase", "round"]
    out = d.groupby(keys, sort=True)["tokens_per_s"].median().reset_index()
    out["round"] = out["round"].astype(int)
    return out


def paired_ratios(df: pd.DataFrame, num_model: str, den_model: str, phase: str = "tg", *,
                  conf: float = 0.95, n_boot: int = N_BOOT, seed: int = SEED) -> Estimate:
    """Median over rounds of (num tok/s / den tok/s) measured in the same round, with the
    distribution-free order-statistic interval over rounds (stats.median_ci_exact: 6 rounds at
    least for a finite 95% interval). Rounds where either model has no ok row are left out.
    `df` must hold one (device, engine, quant, test) only."""
    d = _ok(df, phase)
    for k in GROUP:
        if k in d.columns and d[k].nunique() > 1:
            raise ValueError(f"paired_ratios: rows of several {k}s ({sorted(d[k].unique())}); select one")
    ratios = paired_values(d, num_model, den_model, phase)
    return median_ci_exact(ratios, conf=conf)


def paired_values(df: pd.DataFrame, num_model: str, den_model: str, phase: str = "tg") -> np.ndarray:
    """The per-round ratios behind `paired_ratios`, in round order."""
    r = per_round(df, phase)
    w = r.pivot_table(index="round", columns="model", values="tokens_per_s", aggfunc="median")
    if num_model not in w.columns or den_model not in w.columns:
        return np.array([], dtype=float)
    both = w[[num_model, den_model]].dropna()
    return (both[num_model] / both[den_model]).to_numpy(dtype=float)


def per_model(df: pd.DataFrame, phase: str | None = None) -> pd.DataFrame:
    """Throughput per (device, engine, model, quant, test, phase): the median over rounds of each
    round's median, with its order-statistic interval over rounds (columns value, lo, hi, n_rounds)."""
    r = per_round(df, phase)
    keys = [k for k in GROUP if k in r.columns] + ["model", "phase"]
    rows = []
    for key, g in r.groupby(keys, sort=True):
        e = median_ci_exact(g["tokens_per_s"])
        rows.append({**dict(zip(keys, key)), "value": e.value, "lo": e.lo, "hi": e.hi, "n_rounds": e.n})
    return pd.DataFrame(rows, columns=keys + ["value", "lo", "hi", "n_rounds"])


def halfwidth(e: Estimate) -> float:
    """The interval's largest distance from the ratio, relative to it (0.02 = within ±2%)."""
    if not np.isfinite(e.value) or e.value == 0 or e.n < 2:
        return float("inf")
    return float(max(e.hi - e.value, e.value - e.lo) / abs(e.value))


def ratio_table(df: pd.DataFrame, pairs: Iterable[tuple[str, str]], phase: str = "tg") -> pd.DataFrame:
    """paired_ratios for every pair in every (device, engine, quant, test) group holding the phase."""
    d = _ok(df, phase)
    keys = [k for k in GROUP if k in d.columns]
    rows = []
    pairs = list(pairs)
    for key, g in (d.groupby(keys, sort=True) if keys else [((), d)]):
        key = key if isinstance(key, tuple) else (key,)
        for num, den in pairs:
            e = paired_ratios(g, num, den, phase)
            rows.append({**dict(zip(keys, key)), "num": num, "den": den, "phase": phase, "value": e.value,
                         "lo": e.lo, "hi": e.hi, "n_rounds": e.n, "halfwidth": halfwidth(e)})
    return pd.DataFrame(rows, columns=keys + ["num", "den", "phase", "value", "lo", "hi", "n_rounds", "halfwidth"])


# ---- stopping --------------------------------------------------------------------------------
def _utc(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(str(s))


def round_durations(df: pd.DataFrame) -> dict[int, float]:
    """Seconds from a round's first cell start to its last cell end, per round."""
    d = df[df["round"].notna()]
    out = {}
    for k, g in d.groupby("round"):
        out[int(k)] = (max(map(_utc, g["cell_end_utc"])) - min(map(_utc, g["cell_start_utc"]))).total_seconds()
    return out


def decide(df: pd.DataFrame, target_halfwidth: float | None, budget_s: float | None,
           started_utc: str | None = None, pairs: Iterable[tuple[str, str]] = (), *,
           min_rounds: int = 3, max_rounds: int | None = None, phase: str = "tg") -> dict[str, Any]:
    """Whether another round should run, from the records of the rounds so far.

    Stops with reason 'target met' when every pair's ratio (in every quant/test) has
    halfwidth <= target_halfwidth after at least `min_rounds` rounds; 'budget spent' when the time
    used plus the last round's duration would exceed budget_s; 'max rounds' at max_rounds.
    target_halfwidth None with max_rounds N is a fixed number of rounds. Time used: with
    `started_utc`, wall time from it to the last cell's end; without it (the pipeline's choice,
    so that an interruption costs no budget), the sum of the rounds' durations.
    A pair whose models never both measured ok (a cell that crashes or does not fit) cannot meet
    any target: it is listed under `unmeasurable` and left out of the target."""
    if "round" not in df.columns or df["round"].notna().sum() == 0:
        raise ValueError("decide: no round records")
    rounds = sorted({int(k) for k in df["round"].dropna()})
    n = len(rounds)
    table = ratio_table(df, pairs, phase)
    unmeasurable = table[table["n_rounds"] == 0]
    measured = table[table["n_rounds"] > 0]
    worst = float(measured["halfwidth"].max()) if len(measured) else float("inf")
    durations = round_durations(df)
    if started_utc is not None:
        used = (max(map(_utc, df["cell_end_utc"])) - _utc(started_utc)).total_seconds()
    else:
        used = float(sum(durations.values()))
    next_round = durations[rounds[-1]]
    target_met = (target_halfwidth is not None and len(measured) > 0 and n >= min_rounds
                  and worst <= target_halfwidth)
    if target_met:
        go, reason = False, "target met"
    elif max_rounds is not None and n >= max_rounds:
        go, reason = False, "max rounds"
    elif budget_s is not None and used + next_round > budget_s:
        go, reason = False, "budget spent"
    elif n < min_rounds:
        go, reason = True, "fewer than min_rounds"
    elif target_halfwidth is None:
        go, reason = True, "fixed number of rounds"
    else:
        go, reason = True, "target not met"

    def _f(x):
        return None if x is None or not np.isfinite(x) else float(x)

    ratios = [{k: (_f(v) if isinstance(v, float) else v) for k, v in row.items()}
              for row in table.to_dict("records")]
    for r in ratios:
        r["met"] = (target_halfwidth is not None and r["halfwidth"] is not None
                    and r["halfwidth"] <= target_halfwidth)
    return {
        "continue": go, "reason": reason, "rounds_done": n, "last_round": rounds[-1],
        "target_halfwidth": target_halfwidth, "worst_halfwidth": _f(worst), "phase": phase,
        "budget_s": budget_s, "used_s": used, "last_round_s": next_round,
        "min_rounds": min_rounds, "max_rounds": max_rounds,
        "ratios": ratios,
        "unmeasurable": [f"{r['num']}/{r['den']} {r.get('quant', '')} {r.get('test', '')}".strip()
                         for r in unmeasurable.to_dict("records")],
    }


# ---- simulation ------------------------------------------------------------------------------
def simulate(speeds: dict[str, float], *, design: str, n_rounds: int, repetitions: int,
             drift_per_step: float, noise_sd: float = 0.0, seed: int = 0, order_seed: int = 1,
             order: str = "balanced", step_s: float = 1.0, start_utc: str = "2025-01-01T00:00:00+00:00",
             ) -> pd.DataFrame:
    """A stand-in benchmark on a drifting machine: every repetition is one time step, and the
    machine's speed is multiplied by (1 - drift_per_step) per step (heat soak, throttling);
    each measurement gets multiplicative log-normal noise of sd `noise_sd`.

    design 'block': each model runs all n_rounds*repetitions repetitions in one go, in `speeds`'
    order (round is NaN); design 'rounds': n_rounds rounds of one cell per model in round_order.
    Returns run-table-like rows (status ok, phase tg, round, repetition, tokens_per_s, cell times)."""
    if design not in ("block", "rounds"):
        raise ValueError("design must be block or rounds")
    rng = np.random.default_rng(seed)
    t0 = _utc(start_utc)
    rows = []
    step = 0

    def cell(model: str, k: float | None, reps: int) -> None:
        nonlocal step
        start = t0 + dt.timedelta(seconds=step * step_s)
        vals = []
        for i in range(reps):
            v = speeds[model] * (1 - drift_per_step) ** step * float(np.exp(rng.normal(0, noise_sd)))
            vals.append((i, step, v))
            step += 1
        end = t0 + dt.timedelta(seconds=step * step_s)
        for i, s, v in vals:
            rows.append({"device": "sim", "engine": "sim", "model": model, "quant": "Q", "test": "t",
                         "phase": "tg", "status": "ok", "round": k, "repetition": i, "step": s,
                         "tokens_per_s": v, "cell_start_utc": start.isoformat(), "cell_end_utc": end.isoformat()})

    if design == "block":
        for m in speeds:
            cell(m, float("nan"), n_rounds * repetitions)
    else:
        for k in range(n_rounds):
            for m in round_order(list(speeds), order_seed, k, order):
                cell(m, k, repetitions)
    return pd.DataFrame(rows)


# ---- figure ----------------------------------------------------------------------------------
def drift_figure(df: pd.DataFrame, models: list[str], style: str | None, out_paths: list[str],
                 title: str = "") -> None:
    """Per device: tok/s against round index per model (one panel per phase and quant/test), and
    generation tok/s relative to the model's median over rounds; model colours as elsewhere."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from edgemoe.figures import model_colours, save

    if style:
        plt.style.use(style)
    r = per_round(df)
    order = [m for m in models if m in set(r["model"])] + sorted(set(r["model"]) - set(models))
    colours = model_colours(order)
    panels = []  # (quant, test, phase, relative)
    for (q, t), g in r.groupby(["quant", "test"], sort=True):
        phases = [p for p in ("pp", "tg") if p in set(g["phase"])]
        panels += [(q, t, p, False) for p in phases] + ([(q, t, "tg", True)] if "tg" in phases else [])
    ncol = min(3, max(len(panels), 1))
    nrow = max(1, -(-len(panels) // ncol))
    fig, axes = plt.subplots(nrow, ncol, squeeze=False, figsize=(3.2 * ncol, 0.6 + 2.2 * nrow))
    for ax, (q, t, p, rel) in zip(axes.flat, panels):
        g = r[(r["quant"] == q) & (r["test"] == t) & (r["phase"] == p)]
        for m in order:
            s = g[g["model"] == m].sort_values("round")
            if s.empty:
                continue
            y = s["tokens_per_s"] / s["tokens_per_s"].median() * 100 if rel else s["tokens_per_s"]
            ax.plot(s["round"], y, marker="o", ms=3, lw=1, color=colours[m], label=m)
        label = {"pp": "prefill", "tg": "generation"}[p]
        ax.set_ylabel(f"{label} % of model median" if rel else f"{label} tokens/s")
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{q}, {t}: {label}" + (" (relative)" if rel else ""), loc="left")
        if rel:
            ax.axhline(100, color="grey", lw=0.6, ls=":")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if panels:
        axes.flat[0].legend(fontsize=6, frameon=False)
    fig.suptitle(title or "Throughput per round (median over each round's repetitions)", fontsize=7, y=1.0)
    fig.tight_layout()
    save(fig, out_paths)


__all__ = [
    "ORDER_MODES",
    "STOP_REASONS",
    "After",
    "cell_key",
    "chain",
    "decide",
    "drift_figure",
    "halfwidth",
    "headline_pairs",
    "last_cell",
    "paired_ratios",
    "paired_values",
    "per_model",
    "per_round",
    "predecessor",
    "ratio_table",
    "round_durations",
    "round_order",
    "simulate",
    "split_key",
]
