"""The MoE-effect table: total-tracking index and the stand-in check (edgemoe.tables)."""
import sys

from edgemoe.records import read_parquet
from edgemoe.tables import moe_effect_table, write_moe_effect_table

sys.stderr = open(snakemake.log[0], "w")
runs = read_parquet(snakemake.input[0]).to_pandas()
write_moe_effect_table(moe_effect_table(runs, snakemake.params.baseline), snakemake.output.csv, snakemake.output.md)
