"""Validate every cell's records and merge them into the run table (edgemoe.records).
A bad record stops here with its file and line, on the console and in the log."""
import sys

import json

from edgemoe.records import RecordError, merge, read_jsonl, write_parquet

with open(snakemake.log[0], "w") as log:
    try:
        paths = list(snakemake.input.records)
        for done in snakemake.input.rounds:  # the rounds' closing files list their cells' records
            paths += json.load(open(done))["records"]
        sources = [(path, read_jsonl(path)) for path in paths]
        table = merge(sources)
    except RecordError as e:
        print(f"bad run record: {e}", file=log)
        sys.exit(f"bad run record: {e}")
    write_parquet(table, snakemake.output[0])
    print(f"{table.num_rows} rows from {len(sources)} files", file=log)
