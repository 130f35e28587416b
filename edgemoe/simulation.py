"""A stand-in benchmark on a drifting, noisy machine, for testing designs and interval methods
(tests/test_rounds.py, tools/coverage_simulation.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from edgemoe.rounds import round_order


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
    t0 = dt.datetime.fromisoformat(start_utc)
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


