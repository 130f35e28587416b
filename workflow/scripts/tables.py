"""The throughput table as CSV, Markdown and LaTeX (edgemoe.tables)."""
import sys

from edgemoe.files import atomic_write_text
from edgemoe.records import read_parquet
from edgemoe.tables import provenance_table, throughput_table, write_table

sys.stderr = open(snakemake.log[0], "w")
runs = read_parquet(snakemake.input[0]).to_pandas()
table = throughput_table(runs, baseline=snakemake.params.baseline, model_order=snakemake.params.models)
write_table(table, snakemake.output.csv, snakemake.output.md, snakemake.output.tex)
atomic_write_text(snakemake.output.provenance, provenance_table(runs).to_csv(index=False))
