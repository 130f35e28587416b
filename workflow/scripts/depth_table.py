"""Decode speed, memory and KV cache against context depth (edgemoe.tables.depth_table)."""
import sys
from pathlib import Path

from edgemoe.estimates import describe
from edgemoe.files import atomic_write_text
from edgemoe.records import read_parquet
from edgemoe.tables import depth_table

sys.stderr = open(snakemake.log[0], "w")
t = depth_table(read_parquet(snakemake.input[0]).to_pandas(), snakemake.params.baseline)
atomic_write_text(snakemake.output.csv, t.to_csv(index=False, float_format="%.5g"))
methods = sorted({m for ms in t.get("methods", []) for m in str(ms).split(";") if m})
note = ("Decode tok/s at each context depth, ratio to the same-active baseline, peak RSS, and the KV cache "
        "llama.cpp reports beside the f16 size computed from the architecture (bytes per token x n_ctx). "
        + describe(methods))
atomic_write_text(snakemake.output.md, note + "\n\n" + t.to_markdown(index=False, floatfmt=".3g") + "\n")
atomic_write_text(snakemake.output.caption, Path("workflow/report/depth.rst").read_text().strip() + "\n\n" + note + "\n")
