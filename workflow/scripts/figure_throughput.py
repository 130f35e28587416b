"""Throughput per device and model, with intervals and failed cells marked (edgemoe.figures)."""
import sys

from edgemoe.figures import throughput_figure
from edgemoe.records import read_parquet

sys.stderr = open(snakemake.log[0], "w")
runs = read_parquet(snakemake.input.runs).to_pandas()
throughput_figure(runs, snakemake.params.models, snakemake.input.style, list(snakemake.output))
