"""Estimates across engines (the engine axis, edgemoe/engine_axis.py): per model the other engines'
decode and prefill speed-up over the reference engine (the experiment's `engine`), paired inside
rounds like every ratio (`estimates.paired_ratio`); per MoE / dense pair its ratio on each engine
(`estimates.ratios`, grouped by engine as always) and the change of that ratio from the
reference engine to another, paired by round (each round's ratio on one engine over the same
round's on the other); and the sentence that answers "did the newer engine change the MoE's
standing", from those numbers. The table is figures/tables/engines.*, the figure figures/engines.*.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from edgemoe import estimates as E
from edgemoe.files import atomic_write_text
from edgemoe.stats import Estimate, ratio_ci

KEYS = [k for k in E.GROUP if k != "engine"]  # what an engine comparison holds fixed
PHASES = ("tg", "pp")


def engine_order(runs: pd.DataFrame, configured: Sequence[str] = ()) -> list[str]:
    """The engines of the rows: the configured ones first (the first is the reference), then the rest."""
    present = set(runs.loc[runs["kind"] == "bench", "engine"].dropna()) if len(runs) else set()
    return [e for e in configured if e in present] + sorted(present - set(configured))


def moe_pairs(runs: pd.DataFrame, baseline: str) -> list[tuple[str, str]]:
    """(MoE, baseline) for every MoE model of the bench rows (from the records' model_family)."""
    b = runs[runs["kind"] == "bench"]
    if baseline not in set(b["model"]) or "model_family" not in b.columns:
        return []
    fam = b.drop_duplicates("model").set_index("model")["model_family"]
    return [(m, baseline) for m in fam.index if fam[m] == "moe"]


def _key(g: pd.DataFrame, keys: list[str]) -> dict:
    return {k: g[k].iloc[0] for k in keys}


def _paired(a: pd.DataFrame, b: pd.DataFrame, interval: str) -> tuple[E.Estimate, str]:
    if E.in_rounds(a) and E.in_rounds(b):
        by_a, by_b = E._by_round(a[a["round"].notna()]), E._by_round(b[b["round"].notna()])
        iv = E.resolve_interval(interval, len(set(by_a) & set(by_b)))
        return E.paired_ratio(by_a, by_b, iv), f"rounds-ratio/{iv}"
    return ratio_ci(a["tokens_per_s"], b["tokens_per_s"]), "block-ratio"


def speedups(runs: pd.DataFrame, engines: Sequence[str], interval: str = "order-statistic") -> pd.DataFrame:
    """quantity engine_speedup: per (device, quant, test, weights), model, phase and engine e other
    than the reference engines[0], e's tok/s over the reference's, paired in rounds."""
    rows = []
    ref = engines[0] if engines else None
    for phase in PHASES:
        d = E.usable(runs, "bench", phase)
        keys = [k for k in KEYS if k in d.columns]
        for _, g in d.groupby(keys + ["model"], sort=True):
            base = g[g["engine"] == ref]
            for e in engines[1:]:
                other = g[g["engine"] == e]
                if base.empty or other.empty:
                    continue
                est, method = _paired(other, base, interval)
                rows.append(E._row("engine_speedup", list(_key(g, keys).values()), keys, g["model"].iloc[0], ref,
                                   phase, est, method, "rounds" if "rounds" in method else "block") | {"engine": e})
    return pd.DataFrame(rows, columns=E.COLUMNS)


def ratio_changes(runs: pd.DataFrame, pairs: Iterable[tuple[str, str]], engines: Sequence[str],
                  phase: str = "tg") -> pd.DataFrame:
    """quantity ratio_change: per pair (num, den) and engine e, the median over rounds of
    (num/den in round k on e) / (num/den in round k on the reference engine), with the
    order-statistic interval: > 1 means num gained on den with e. Rounds design only."""
    rows = []
    if len(engines) < 2:
        return pd.DataFrame(rows, columns=E.COLUMNS)
    r = E.per_round(runs[runs["kind"] == "bench"], phase)
    keys = [k for k in KEYS if k in r.columns]
    for _, g in (r.groupby(keys, sort=True) if len(r) else []):
        w = g.pivot_table(index="round", columns=["engine", "model"], values="tokens_per_s", aggfunc="median")
        for num, den in pairs:
            per = {}
            for e in engines:
                if (e, num) in w.columns and (e, den) in w.columns:
                    s = (w[(e, num)] / w[(e, den)]).dropna()
                    per[e] = {int(k): np.array([v]) for k, v in s.items()}
            for e in engines[1:]:
                if engines[0] in per and e in per:
                    est = E.paired_ratio(per[e], per[engines[0]])
                    rows.append(E._row("ratio_change", list(_key(g, keys).values()), keys, num, den, phase, est,
                                       "rounds-ratio-change/order-statistic", "rounds") | {"engine": e})
    return pd.DataFrame(rows, columns=E.COLUMNS)


def comparison(runs: pd.DataFrame, baseline: str, engines: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Everything the engines table and figure show, from the run table."""
    engines = engine_order(runs, engines)
    est = E.estimates(runs, baseline, kind="bench")
    pairs = moe_pairs(runs, baseline)
    wanted = set(pairs)
    ratio = est[(est["quantity"] == "ratio") & np.array([p in wanted for p in zip(est["model"], est["reference"])], bool)]
    index = est[est["quantity"] == "tracking_index"]
    return {"engines": pd.DataFrame({"engine": engines}), "tok_s": est[est["quantity"] == "tokens_per_s"],
            "speedup": speedups(runs, engines), "ratio": ratio, "index": index,
            "change": pd.concat([ratio_changes(runs, pairs, engines, p) for p in PHASES], ignore_index=True)}


def _iv(v, lo, hi, digits=3) -> str:
    """An estimate as every table shows one (stats.Estimate.fmt)."""
    return Estimate(float(v), float(lo), float(hi), 0).fmt(digits)


def finding(c: dict[str, pd.DataFrame]) -> str:
    """The answer, from the numbers: for each MoE / dense pair's decode ratio, its value on each
    engine and whether the change between engines is distinguishable at 95%."""
    engines = list(c["engines"]["engine"])
    if len(engines) < 2:
        return "One engine in these runs: nothing to compare (experiment.engines)."
    out = []
    ch = c["change"][c["change"]["phase"] == "tg"]
    for r in ch.to_dict("records"):
        at = {k: r[k] for k in KEYS}
        on = {e: E.pick(c["ratio"], "ratio", **at, engine=e, model=r["model"], reference=r["reference"], phase="tg")
              for e in (engines[0], r["engine"])}
        lo, hi = r["lo"], r["hi"]
        if lo > 1:
            verdict = f"{r['model']} gained {100 * (r['value'] - 1):.1f}% on {r['reference']} with {r['engine']}"
        elif hi < 1:
            verdict = f"{r['model']} lost {100 * (1 - r['value']):.1f}% against {r['reference']} with {r['engine']}"
        else:
            verdict = "no change distinguishable at 95%"
        out.append(f"{r['model']} / {r['reference']} decode ({r['device']}, {r['quant']}, {r['test']}): "
                   + ", ".join(f"{on[e].fmt(3)} on {e}" for e in on)
                   + f"; paired by round, {r['engine']} / {engines[0]} = {_iv(r['value'], lo, hi)} over {r['n']} "
                   + f"rounds: {verdict}.")
    return " ".join(out) or "No MoE / dense pair measured on two engines in the same rounds."


def write_table(c: dict[str, pd.DataFrame], csv_path: str | Path, md_path: str | Path) -> None:
    """CSV: every estimate of the comparison (one row each); markdown: speed-ups, then the pairs."""
    parts = [c[k] for k in ("tok_s", "speedup", "ratio", "index", "change") if len(c[k])]
    every = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=E.COLUMNS)
    atomic_write_text(csv_path, every.to_csv(index=False, float_format="%.6g"))
    engines = list(c["engines"]["engine"])
    text = ["Engines compared on the same model files, cells of every engine shuffled together in each round. "
            f"Reference engine: {engines[0] if engines else '–'}. " + finding(c)]
    sp = c["speedup"]
    if len(sp):
        tok = c["tok_s"]
        shown = pd.DataFrame({
            "device": sp["device"], "quant": sp["quant"], "test": sp["test"], "model": sp["model"],
            "phase": sp["phase"].map({"tg": "decode", "pp": "prefill"}),
            **{f"tok/s {e}": [_iv(x.value, x.lo, x.hi, 1) for x in (
                E.pick(tok, "tokens_per_s", **{k: r[k] for k in KEYS}, engine=e, model=r["model"], phase=r["phase"])
                for r in sp.to_dict("records"))] for e in engines},
            "speed-up": [f"{_iv(v, lo, hi)} ({e})"
                         for v, lo, hi, e in zip(sp["value"], sp["lo"], sp["hi"], sp["engine"])],
            "rounds": sp["n"]})
        text.append(shown.to_markdown(index=False))
    pairs = c["ratio"].drop_duplicates(["device", "quant", "test", "model", "reference", "phase"])
    if len(pairs) and len(engines) > 1:
        rows = []
        for r in pairs.to_dict("records"):
            at = {k: r[k] for k in KEYS}
            row = {"pair": f"{r['model']} / {r['reference']}", "phase": {"tg": "decode", "pp": "prefill"}[r["phase"]]}
            for e in engines:
                x = E.pick(c["ratio"], "ratio", **at, engine=e, model=r["model"], reference=r["reference"],
                           phase=r["phase"])
                row[f"ratio {e}"] = _iv(x.value, x.lo, x.hi)
            for e in engines[1:]:
                x = E.pick(c["change"], "ratio_change", **at, engine=e, model=r["model"], reference=r["reference"],
                           phase=r["phase"])
                row[f"change {e} / {engines[0]}"] = _iv(x.value, x.lo, x.hi)
            for e in engines:
                idx = c["index"][(c["index"]["engine"] == e) & (c["index"]["phase"] == r["phase"])
                                 & (c["index"]["model"] == r["model"])]
                if len(idx):
                    row[f"index {e}"] = _iv(*idx.iloc[0][["value", "lo", "hi"]])
            rows.append(row)
        text.append(pd.DataFrame(rows).to_markdown(index=False))
    methods = sorted(set(every["method"].dropna())) if len(every) else []
    text.append(E.describe(methods))
    atomic_write_text(md_path, "\n\n".join(text) + "\n")


__all__ = ["comparison", "engine_order", "finding", "moe_pairs", "ratio_changes", "speedups", "write_table"]
