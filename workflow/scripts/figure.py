"""One figure from the run table (edgemoe.figures.<params.function>), as PNG and PDF."""
import inspect
import sys

from edgemoe import figures
from edgemoe.records import read_parquet

sys.stderr = open(snakemake.log[0], "w")
runs = read_parquet(snakemake.input.runs).to_pandas()
draw = getattr(figures, snakemake.params.function)
extra = {"baseline": snakemake.params.baseline} if "baseline" in inspect.signature(draw).parameters else {}
draw(runs, snakemake.params.models, style=snakemake.input.style, out_paths=[snakemake.output.png, snakemake.output.pdf],
     **extra)
