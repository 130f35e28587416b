"""A against B: the one paired-comparison capability of the project.

Arms (ways of measuring the same thing: two engines, a twin and its real model, two depth
methods, a harness and bare llama-bench) run alternately in rounds, in ABBA order (round k runs
the arms reversed when k is odd), and are compared by `estimates.paired_ratio`: the median over
rounds of the ratio of the two arms' round medians, with the rounds' interval. Used by the
tools/ measurements (harness overhead, depth-method agreement, profiler overhead) and twin
fidelity, so that every A/B number of the project has one definition."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edgemoe.estimates import paired_ratio
from edgemoe.stats import Estimate


@dataclass(frozen=True)
class Arm:
    name: str
    run: Callable[[int], Sequence[float]]  # round k -> the measured values (tok/s per repetition)


def order(arms: Sequence[Arm], k: int) -> list[Arm]:
    """ABBA: a monotone drift favours each arm equally often."""
    return list(arms) if k % 2 == 0 else list(arms)[::-1]


def alternate(arms: Sequence[Arm], rounds: int, on_round: Callable[[int, dict], None] | None = None) -> pd.DataFrame:
    """Run every arm once per round for `rounds` rounds; one row per value (arm, round, position,
    repetition, value)."""
    if len({a.name for a in arms}) != len(arms):
        raise ValueError("arm names must be unique")
    rows = []
    for k in range(rounds):
        medians = {}
        for pos, arm in enumerate(order(arms, k)):
            values = [float(v) for v in arm.run(k)]
            rows += [{"arm": arm.name, "round": k, "position": pos, "repetition": i, "value": v}
                     for i, v in enumerate(values)]
            medians[arm.name] = float(np.median(values)) if values else float("nan")
        if on_round:
            on_round(k, medians)
    return pd.DataFrame(rows, columns=["arm", "round", "position", "repetition", "value"])


def compare(rows: pd.DataFrame, num: str, den: str, interval: str = "order-statistic") -> Estimate:
    """num / den, paired by round (see the module doc)."""

    def by_round(arm: str) -> dict[int, np.ndarray]:
        d = rows[rows["arm"] == arm]
        return {int(k): g["value"].to_numpy(dtype=float) for k, g in d.groupby("round")}

    return paired_ratio(by_round(num), by_round(den), interval)


__all__ = ["Arm", "alternate", "compare", "order"]
