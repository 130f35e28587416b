"""The GPU check's summary and verdict (tools/gpu_check.sh): tok/s per model, node coverage and the
routing share of MoE-block time (the breakdown table), the profiler-off overhead (patched /
unpatched, paired), the peak GPU memory sampled through nvidia-smi. Exit 1 on any failed check."""
import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--out", required=True, help="the check's folder")
a = ap.parse_args()
out = Path(a.out)
fails = []
tp = pd.read_csv(out / "figures/tables/throughput.csv")
print(tp[["model", "test", "status", "gen_tok_s", "gen_lo", "gen_hi", "gen_ratio_to_baseline"]].to_string(index=False))
fails += [f"{r.model} {r.test}: status {r.status}" for r in tp.itertuples() if r.status != "ok"]
bd = pd.read_csv(out / "figures/tables/breakdown.csv")
print(bd[["model", "backend", "coverage_median", "routing_share_of_moe", "routing_lo", "routing_hi"]].to_string(index=False))
fails += [f"{r.model}: node coverage {r.coverage_median:.2f} < 0.9" for r in bd.itertuples() if r.coverage_median < 0.9]
fails += [f"{r.model}: backend {r.backend}, not cuda" for r in bd.itertuples() if r.backend != "cuda"]
for f in sorted(out.glob("overhead-*.json")):
    o = json.loads(f.read_text())
    med, lo, hi = o["median_ratio"], o["ci95_low"], o["ci95_high"]
    print(f"profiler-off overhead {f.stem[9:]}: patched / unpatched tok/s {med:.4f} [{lo:.4f}, {hi:.4f}]")
    if hi < 0.97:
        fails.append(f"{f.stem}: the patch slows decode (upper bound {hi:.3f} < 0.97)")
mem = [int(x) for x in (out / "gpu-memory-mib.log").read_text().split() if x.isdigit()]
print(f"peak GPU memory (nvidia-smi / NVML, 200 ms samples): {max(mem) if mem else 'no sample'} MiB")
if not mem:
    fails.append("no GPU memory sample")
print("\n".join(["gpu_check: FAILED:"] + fails) if fails else "gpu_check: every check passed")
sys.exit(1 if fails else 0)
