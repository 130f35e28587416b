"""The fidelity summary as a table: twin/real paired ratio per phase, block-scale spread."""
import json
import sys

import pandas as pd

from edgemoe.files import atomic_write_text

sys.stderr = open(snakemake.log[0], "w")
rows = []
for path in snakemake.input:
    s = json.loads(open(path).read())
    for phase in ("pp", "tg"):
        r = s[f"{phase}_twin_over_real"]
        rows.append({"device": path.split("/")[2], "real": s["real"], "quant": s["quant"], "phase": phase,
                     "real_tok_s": s[f"{phase}_real_tok_s"], "twin_tok_s": s[f"{phase}_twin_tok_s"],
                     "twin_over_real": r["median"], "lo": r["lo"], "hi": r["hi"], "rounds": r["pairs"],
                     "block_spread_real": s["block_spread_real"]["median_s"],
                     "block_spread_twin": s["block_spread_twin"]["median_s"],
                     "tensor_type_mismatches": len(s["tensor_type_mismatches"])})
t = pd.DataFrame(rows)
atomic_write_text(snakemake.output.csv, t.to_csv(index=False, float_format="%.4g"))
atomic_write_text(snakemake.output.md, "Paired twin/real tok/s ratio (median over alternating rounds, 95% "
                  "bootstrap interval); block spread = median over tensors of the std of log2(32-block absmax).\n\n"
                  + t.to_markdown(index=False, floatfmt=".3f") + "\n")
