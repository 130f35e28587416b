"""The engines table: speed-ups and MoE / dense ratios across engines (edgemoe.engines_compare)."""
import sys

from edgemoe.engines_compare import comparison, write_table
from edgemoe.records import read_parquet

sys.stderr = open(snakemake.log[0], "w")
runs = read_parquet(snakemake.input[0]).to_pandas()
p = snakemake.params
write_table(comparison(runs, p.baseline, p.engines), snakemake.output.csv, snakemake.output.md)
