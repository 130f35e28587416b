"""The memory-regimes table (edgemoe.tables.regimes_table) from the run table."""
import sys

from edgemoe.records import read_parquet
from edgemoe.tables import regimes_table, write_regimes_table

sys.stderr = open(snakemake.log[0], "w")
p, out = snakemake.params, snakemake.output
runs = read_parquet(snakemake.input[0]).to_pandas()
write_regimes_table(regimes_table(runs, p.baseline, p.models), out.csv, out.md)
