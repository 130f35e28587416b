"""How fast does a rounds design reach its precision? From a rounds run table (or a release), the
headline decode ratios (each MoE / each dense) re-estimated after each counted round as the
pipeline estimates them (edgemoe.estimates), against the measuring time spent so far (warm-up
included): seconds per round, and the worst half-width after 5, 10 and 15 minutes.

    python tools/precision_vs_time.py results/runs.parquet [data/released/<id>/runs.jsonl.gz ...]
"""
import argparse
import json

import pandas as pd

from edgemoe.estimates import halfwidth, ratios, usable
from edgemoe.records import merge, read_jsonl, read_parquet
from edgemoe.rounds import headline_pairs
from edgemoe.stopping import round_durations


def load(path: str) -> pd.DataFrame:
    if path.endswith(".parquet"):
        return read_parquet(path).to_pandas()
    return merge([(path, read_jsonl(path))]).to_pandas()


def curve(runs: pd.DataFrame, interval: str = "order-statistic") -> pd.DataFrame:
    """One row per counted round n: measuring seconds up to its end, worst half-width, ratios."""
    bench = runs[(runs["kind"] == "bench") & runs["round"].notna()]
    # the stopping rule's pairs: registry models only (counterfactuals have the index, not a target)
    registry = bench[bench["derived_from"].isna()] if "derived_from" in bench.columns else bench
    families = dict(zip(registry["model"], registry["model_family"]))
    dense = [m for m, f in families.items() if f != "moe"]
    pairs = headline_pairs(families, dense[0] if dense else "", "all")
    durations = round_durations(bench)
    counted = sorted({int(k) for k in usable(bench)["round"].dropna()})
    rows = []
    for n, k in enumerate(counted, start=1):
        upto = bench[bench["round"] <= k]
        t = ratios(upto, pairs, "bench", "tg", interval)
        hw = [halfwidth(r) for r in t.to_dict("records")]
        rows.append({"counted_rounds": n, "round": k, "measuring_s": sum(v for j, v in durations.items() if j <= k),
                     "worst_halfwidth": max(hw) if hw else float("inf"),
                     **{f"{r['model']}/{r['reference']} {r['test']}": f"{r['value']:.4f} [{r['lo']:.4f}, {r['hi']:.4f}]"
                        for r in t.to_dict("records")}})
    return pd.DataFrame(rows)


def at_minutes(c: pd.DataFrame, minutes: float) -> float:
    within = c[c["measuring_s"] <= minutes * 60]
    return float(within["worst_halfwidth"].iloc[-1]) if len(within) else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--interval", default="order-statistic")
    a = ap.parse_args()
    summary = []
    for path in a.runs:
        c = curve(load(path), a.interval)
        print(f"== {path}")
        print(c.to_string(index=False, max_colwidth=40))
        summary.append({"runs": path, "seconds_per_round": float(c["measuring_s"].diff().median()),
                        **{f"worst_halfwidth_after_{m}_min": at_minutes(c, m) for m in (5, 10, 15)}})
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
