"""Method agreement and per-token latency tables (edgemoe.tables_method) from the run table."""
import sys

from edgemoe.records import read_parquet
from edgemoe.tables_method import latency_table, method_table, write_method_tables

sys.stderr = open(snakemake.log[0], "w")
runs = read_parquet(snakemake.input[0]).to_pandas()
models = snakemake.params.models
write_method_tables(method_table(runs, models), latency_table(runs, models), dict(snakemake.output.items()))
