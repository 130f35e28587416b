"""Decode speed, memory and KV cache against context depth (edgemoe.tables.depth_table)."""
import sys

from edgemoe.files import atomic_write_text
from edgemoe.records import read_parquet
from edgemoe.tables import depth_table

sys.stderr = open(snakemake.log[0], "w")
t = depth_table(read_parquet(snakemake.input[0]).to_pandas(), snakemake.params.baseline)
atomic_write_text(snakemake.output.csv, t.to_csv(index=False, float_format="%.5g"))
note = ("Decode tok/s at each context depth (median over decode steps, 95% bootstrap interval), ratio to the "
        "same-active baseline, peak RSS, and the KV cache llama.cpp reports beside the f16 size computed from "
        "the architecture (bytes per token x n_ctx).\n\n")
atomic_write_text(snakemake.output.md, note + (t.to_markdown(index=False, floatfmt=".3g") if len(t) else "(no depth cells)") + "\n")
