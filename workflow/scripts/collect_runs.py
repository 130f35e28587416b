"""Validate every cell's records and merge them into the run table (edgemoe.records).
A bad record stops here with its file and line, on the console and in the log."""
import sys

import json

from edgemoe.records import RecordError, merge, read_jsonl, write_parquet
from edgemoe.store_snapshot import union_records, write_union_summary

with open(snakemake.log[0], "w") as log:
    try:
        paths = list(snakemake.input.records)
        for done in snakemake.input.rounds:  # the rounds' closing files list their cells' records
            paths += json.load(open(done))["records"]
        paths += union_records(snakemake.input.union)  # runs=union: fetched snapshots (edgemoe/store.py)
        sources = [(path, read_jsonl(path)) for path in paths]
        table = merge(sources)
    except RecordError as e:
        print(f"bad run record: {e}", file=log)
        sys.exit(f"bad run record: {e}")
    write_parquet(table, snakemake.output[0])
    if snakemake.input.union:
        write_union_summary(snakemake.output.union, snakemake.input.union, snakemake.output[0])
    print(f"{table.num_rows} rows from {len(sources)} files", file=log)
