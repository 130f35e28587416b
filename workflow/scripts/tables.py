"""The throughput table as CSV, Markdown and LaTeX, its caption, and the provenance table
(edgemoe.tables)."""
import sys
from pathlib import Path

from edgemoe.files import atomic_write_text
from edgemoe.records import read_parquet
from edgemoe.store_snapshot import with_snapshots
from edgemoe.tables import provenance_table, table_note, throughput_table, write_table

sys.stderr = open(snakemake.log[0], "w")
out = snakemake.output
runs = read_parquet(snakemake.input[0]).to_pandas()
table = throughput_table(runs, baseline=snakemake.params.baseline, model_order=snakemake.params.models)
write_table(table, out.csv, out.md, out.tex)
atomic_write_text(out.caption, Path("workflow/report/throughput_table.rst").read_text().strip() + "\n\n"
                  + table_note(table) + "\n")
prov = with_snapshots(provenance_table(runs), snakemake.params.get("snapshots", {}))  # runs=union: snapshot ids
atomic_write_text(out.provenance, prov.to_csv(index=False))
