"""Every locality run's rows (and a release's) into results/locality.parquet (edgemoe.locality_data)."""

import sys

from edgemoe.locality_data import merge, write_table

with open(snakemake.log[0], "w") as log:
    try:
        table = merge(list(snakemake.input))
    except ValueError as e:
        print(f"bad locality rows: {e}", file=log)
        sys.exit(f"bad locality rows: {e}")
    write_table(table, snakemake.output[0])
    print(f"{table.num_rows} rows from {len(snakemake.input)} files", file=log)
