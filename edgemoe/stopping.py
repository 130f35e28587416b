"""Adaptive stopping of the rounds: after each round, whether every headline ratio is precise
enough, or the measuring budget or the round cap is spent (the `round_decision` checkpoint).

Ratios and intervals come from `edgemoe.estimates` (the same numbers the table shows); warm-up
rows never count, neither for the target nor as rounds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from edgemoe.estimates import halfwidth, ratios, usable

STOP_REASONS = ("target met", "budget spent", "max rounds")


def _utc(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(str(s))


def round_durations(df: pd.DataFrame) -> dict[int, float]:
    """Seconds of measuring per round: the union of its cells' (start, end) spans, warm-up included
    (it is measuring time too). Gaps between cells are not counted: jobs Snakemake runs between
    them (a twin being written while the warm-up round waits for it, an interruption) are no
    measuring, and counting them ended the default run's budget before its sixth counted round."""
    d = df[df["round"].notna()]
    out = {}
    for k, g in d.groupby("round"):
        spans = sorted({(_utc(a), _utc(b)) for a, b in zip(g["cell_start_utc"], g["cell_end_utc"])})
        total, (cur_a, cur_b) = 0.0, spans[0]
        for a, b in spans[1:]:
            if a > cur_b:
                total += (cur_b - cur_a).total_seconds()
                cur_a, cur_b = a, b
            else:
                cur_b = max(cur_b, b)
        out[int(k)] = total + (cur_b - cur_a).total_seconds()
    return out


def ratio_table(df: pd.DataFrame, pairs: Iterable[tuple[str, str]], phase: str = "tg",
                interval: str = "order-statistic") -> pd.DataFrame:
    """The headline ratios (estimates.ratios of every kind in the rows) with their half-widths."""
    kinds = sorted(set(df["kind"])) if "kind" in df.columns else [None]
    parts = [ratios(df, pairs, kind, phase, interval) for kind in kinds]
    t = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    t = t.rename(columns={"model": "num", "reference": "den", "n": "n_rounds"})
    t["halfwidth"] = [halfwidth({"value": v, "lo": lo, "hi": hi, "n": n})
                      for v, lo, hi, n in zip(t["value"], t["lo"], t["hi"], t["n_rounds"])]
    return t.drop(columns=["quantity", "method", "design"])


def decide(df: pd.DataFrame, target_halfwidth: float | None, budget_s: float | None,
           started_utc: str | None = None, pairs: Iterable[tuple[str, str]] = (), *,
           min_rounds: int = 3, max_rounds: int | None = None, phase: str = "tg",
           interval: str = "order-statistic", like_next: Iterable[int] | None = None) -> dict[str, Any]:
    """Whether another round should run, from the records of the rounds so far.

    Stops with reason 'target met' when every pair's ratio (in every quant/test) has
    halfwidth <= target_halfwidth after at least `min_rounds` counted rounds; 'budget spent' when
    the time used plus the last round's duration would exceed budget_s; 'max rounds' at max_rounds
    rounds (warm-up included). target_halfwidth None with max_rounds N is a fixed number of rounds.
    Time used: with `started_utc`, wall time from it to the last cell's end; without it (the
    pipeline's choice, so that an interruption costs no budget), the sum of the rounds' durations.
    A pair whose models never both measured ok (a cell that crashes or does not fit) cannot meet
    any target: it is listed under `unmeasurable` and left out of the target. The next round's
    duration is foreseen from the last of the rounds `like_next` names (those with the next round's
    cells: a prefill round every Nth is not the next round's length), else from the last round."""
    if "round" not in df.columns or df["round"].notna().sum() == 0:
        raise ValueError("decide: no round records")
    rounds = sorted({int(k) for k in df["round"].dropna()})
    counted = sorted({int(k) for k in usable(df, kind=None)["round"].dropna()})
    n = len(counted)
    table = ratio_table(df, pairs, phase, interval)
    unmeasurable = table[table["n_rounds"] == 0]
    measured = table[table["n_rounds"] > 0]
    worst = float(measured["halfwidth"].max()) if len(measured) else float("inf")
    durations = round_durations(df)
    if started_utc is not None:
        used = (max(map(_utc, df["cell_end_utc"])) - _utc(started_utc)).total_seconds()
    else:
        used = float(sum(durations.values()))
    alike = [k for k in (like_next or []) if k in durations]
    next_round = durations[alike[-1]] if alike else durations[rounds[-1]]
    target_met = (target_halfwidth is not None and len(measured) > 0 and n >= min_rounds
                  and worst <= target_halfwidth)
    if target_met:
        go, reason = False, "target met"
    elif max_rounds is not None and len(rounds) >= max_rounds:
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

    ratios_out = [{k: (_f(v) if isinstance(v, float) else v) for k, v in row.items()}
                  for row in table.to_dict("records")]
    for r in ratios_out:
        r["met"] = (target_halfwidth is not None and r["halfwidth"] is not None
                    and r["halfwidth"] <= target_halfwidth)
    return {
        "continue": go, "reason": reason, "rounds_done": len(rounds), "counted_rounds": n,
        "last_round": rounds[-1], "target_halfwidth": target_halfwidth, "worst_halfwidth": _f(worst),
        "phase": phase, "interval": interval, "budget_s": budget_s, "used_s": used, "last_round_s": durations[rounds[-1]], "next_round_s": next_round,
        "min_rounds": min_rounds, "max_rounds": max_rounds,
        "ratios": ratios_out,
        "unmeasurable": [f"{r['num']}/{r['den']} {r.get('quant', '')} {r.get('test', '')}".strip()
                         for r in unmeasurable.to_dict("records")],
    }
