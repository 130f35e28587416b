"""Validate every cell's records and merge them into the run table (edgemoe.records)."""
import sys

from edgemoe.records import merge, read_jsonl, write_parquet

sys.stderr = open(snakemake.log[0], "w")
sources = [(path, read_jsonl(path)) for path in snakemake.input.records]
table = merge(sources)
write_parquet(table, snakemake.output[0])
print(f"{table.num_rows} rows from {len(sources)} files", file=sys.stderr)
