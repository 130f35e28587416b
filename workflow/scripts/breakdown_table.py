"""Decode-time breakdown by node class and the routing share (edgemoe.tables.breakdown_table)."""
import sys

from edgemoe.records import read_parquet
from edgemoe.tables import breakdown_table, write_breakdown

sys.stderr = open(snakemake.log[0], "w")
write_breakdown(breakdown_table(read_parquet(snakemake.input[0]).to_pandas()), snakemake.output.csv, snakemake.output.md)
