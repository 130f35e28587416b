"""Issue 6's comparison: the OLMoE / Llama-3.2-1B generation-ratio interval from the block design
and from rounds, and how long adaptive rounds took. Reads what the precision-* experiment configs
(config/experiments/) produced:

    python tools/precision_report.py --block <cells/.../tg128-block.jsonl files> --rounds <done.json> [--adaptive <done.json>]
"""
import argparse
import json

import pandas as pd

from edgemoe.records import read_jsonl
from edgemoe.rounds import paired_ratios
from edgemoe.stats import ratio_ci

ap = argparse.ArgumentParser()
ap.add_argument("--block", nargs=2, metavar=("MOE_RECORDS", "DENSE_RECORDS"))
ap.add_argument("--rounds")
ap.add_argument("--adaptive")
ap.add_argument("--moe", default="olmoe-1b-7b")
ap.add_argument("--dense", default="llama-3.2-1b")
a = ap.parse_args()


def show(label, est, minutes, extra=""):
    half = max(est.value - est.lo, est.hi - est.value) / est.value
    print(f"{label}: ratio {est.value:.4f} [{est.lo:.4f}, {est.hi:.4f}], half-width {half * 100:.2f}%, "
          f"{minutes:.1f} min of benchmarking{extra}")


if a.block:
    moe, dense = (pd.DataFrame(read_jsonl(p)) for p in a.block)
    tg = lambda d: d.loc[(d["phase"] == "tg") & (d["status"] == "ok"), "tokens_per_s"]  # noqa: E731
    minutes = sum((pd.to_datetime(d["cell_end_utc"].iloc[0]) - pd.to_datetime(d["cell_start_utc"].iloc[0])).total_seconds()
                  for d in (moe, dense)) / 60
    show("block (all of A, then all of B)", ratio_ci(tg(moe), tg(dense)), minutes, f", {len(tg(moe))} + {len(tg(dense))} repetitions")
for label, path in (("rounds", a.rounds), ("adaptive rounds", a.adaptive)):
    if not path:
        continue
    done = json.loads(open(path).read())
    df = pd.DataFrame([r for f in done["records"] for r in read_jsonl(f)])
    minutes = df.groupby("cell_id").apply(lambda g: (pd.to_datetime(g["cell_end_utc"].iloc[0]) -
                                                      pd.to_datetime(g["cell_start_utc"].iloc[0])).total_seconds()).sum() / 60
    show(label, paired_ratios(df, a.moe, a.dense), minutes, f", {done['rounds']} rounds, stopped: {done['stopped']}")
