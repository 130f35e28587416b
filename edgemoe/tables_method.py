"""Tables of the study's own method (edgemoe/prompt_cells.py): how far prompt-run decode is from
llama-bench decode per model, and per-token latency; numbers from edgemoe.estimates_method."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from edgemoe import estimates as E
from edgemoe.estimates_method import QUANTILES, latency, method_ratios
from edgemoe.files import atomic_write_text
from edgemoe.tables import _interval, _intervals, _methods

KEYS = ["device", "engine", "quant", "weights_source", "model"]


def method_table(runs: pd.DataFrame, model_order: list[str]) -> pd.DataFrame:
    """Per model file and (prompt test, llama-bench test): both methods' decode tok/s and their
    ratio, paired inside rounds."""
    ratios = method_ratios(runs)
    if ratios.empty:
        return pd.DataFrame()
    tok = pd.concat([E.medians(runs, "bench", interval="auto"), E.medians(runs, "prompt", interval="auto")],
                    ignore_index=True)
    rows = []
    for r in ratios.to_dict("records"):
        at = {k: r[k] for k in ("device", "engine", "quant", "weights_source")}
        cli = E.pick(tok, "tokens_per_s", **at, test=r["test"], model=r["model"], phase="tg")
        bench = E.pick(tok, "tokens_per_s", **at, test=r["reference"].split(" ", 1)[1], model=r["model"], phase="tg")
        rows.append({**at, "model": r["model"], "prompt_test": r["test"], "bench_test": r["reference"].split(" ", 1)[1],
                     "cli_tok_s": cli.value, "cli_lo": cli.lo, "cli_hi": cli.hi,
                     "bench_tok_s": bench.value, "bench_lo": bench.lo, "bench_hi": bench.hi,
                     "ratio": r["value"], "ratio_lo": r["lo"], "ratio_hi": r["hi"], "n": r["n"],
                     "methods": r["method"]})
    return _in_order(pd.DataFrame(rows), model_order, [])


def latency_table(runs: pd.DataFrame, model_order: list[str]) -> pd.DataFrame:
    """Per model and source (prompt cells, profile cells): time to first token and inter-token
    latency p50/p90/p99 with their intervals."""
    est = latency(runs)
    if est.empty:
        return pd.DataFrame()
    rows = []
    for key, g in est.groupby(E.GROUP + ["model"], sort=True, dropna=False):
        at = dict(zip(E.GROUP + ["model"], key))
        row = {**at, "source": "profile (edgemoe-profile steps)" if at["test"] == "profile" else "prompts (llama-cli)"}
        for q in ["ttft_ms", *(f"itl_p{x}_ms" for x in QUANTILES)]:
            hit = g[g["quantity"] == q]
            e = hit.iloc[0] if len(hit) else None
            row.update({q: e["value"] if e is not None else float("nan"), f"{q}_lo": e["lo"] if e is not None else float("nan"),
                        f"{q}_hi": e["hi"] if e is not None else float("nan")})
        row["methods"] = ";".join(sorted(set(g["method"])))
        rows.append(row)
    return _in_order(pd.DataFrame(rows), model_order, ["source"])


def _in_order(t: pd.DataFrame, model_order: list[str], first: list[str]) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(model_order)}
    t["_rank"] = t["model"].map(lambda m: rank.get(m, len(rank)))
    return t.sort_values([*first, "_rank"], kind="stable").drop(columns="_rank").reset_index(drop=True)


def write_method_tables(method: pd.DataFrame, lat: pd.DataFrame, paths: dict[str, str | Path]) -> None:
    atomic_write_text(paths["method_csv"], method.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(paths["latency_csv"], lat.to_csv(index=False, float_format="%.6g"))
    if method.empty:
        atomic_write_text(paths["method_md"], "No model has both prompt cells and llama-bench decode cells.\n")
    else:
        shown = pd.DataFrame({
            "device": method["device"], "model": method["model"], "quant": method["quant"],
            "prompt runs": method["prompt_test"], "llama-bench": method["bench_test"],
            "decode tok/s, prompt runs": _intervals(method, "cli_tok_s", "cli_lo", "cli_hi", 2),
            "decode tok/s, llama-bench": _intervals(method, "bench_tok_s", "bench_lo", "bench_hi", 2),
            "prompt runs / llama-bench": _intervals(method, "ratio", "ratio_lo", "ratio_hi", 3),
        })
        note = ("Method agreement: decode tok/s of the study's method (llama-cli on every prompt of the set, greedy, "
                "the perf footer's eval tok/s) against llama-bench decode of the same model file. "
                + E.describe(_methods(method)) + " Weights 'twin' are shape twins (random weights).")
        atomic_write_text(paths["method_md"], note + "\n\n" + shown.to_markdown(index=False) + "\n")
    if lat.empty:
        atomic_write_text(paths["latency_md"], "No prompt or profile cells in the run table.\n")
        return
    shown = pd.DataFrame({"device": lat["device"], "model": lat["model"], "quant": lat["quant"], "source": lat["source"],
                          "TTFT (ms)": [_interval(v, lo, hi, 1) for v, lo, hi in
                                        zip(lat["ttft_ms"], lat["ttft_ms_lo"], lat["ttft_ms_hi"])],
                          **{f"ITL p{q} (ms)": _intervals(lat, f"itl_p{q}_ms", f"itl_p{q}_ms_lo", f"itl_p{q}_ms_hi", 1)
                             for q in QUANTILES}})
    note = ("Per-token latency: time to first token (prompt runs: from the prompt's forward pass to the first "
            "generated token's, median over runs) and inter-token latency percentiles. " + E.describe(_methods(lat))
            + " Weights 'twin' are shape twins (random weights).")
    atomic_write_text(paths["latency_md"], note + "\n\n" + shown.to_markdown(index=False) + "\n")
