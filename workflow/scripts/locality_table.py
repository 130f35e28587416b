"""The expert-locality table and usage histogram (edgemoe.locality) from results/locality.parquet."""

import sys

from edgemoe.files import atomic_write_text
from edgemoe.locality import table, usage, write_table
from edgemoe.locality_data import read_table

sys.stderr = open(snakemake.log[0], "w")
sel = read_table(snakemake.input[0]).to_pandas()
write_table(table(sel), sel, snakemake.output.csv, snakemake.output.md)
atomic_write_text(snakemake.output.usage, usage(sel).to_csv(index=False, float_format="%.6g"))
