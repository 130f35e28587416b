"""The expert-locality figure (edgemoe.figures.locality_figure): PNG, PDF, the numbers drawn, and a
caption that says what was decoded and which models are twins."""

import sys
from pathlib import Path

from edgemoe import figures
from edgemoe.files import atomic_write_text
from edgemoe.locality import decoded
from edgemoe.locality_data import read_table

sys.stderr = open(snakemake.log[0], "w")
p, out = snakemake.params, snakemake.output
sel = read_table(snakemake.input.locality).to_pandas()
drawn = getattr(figures, p.function)(sel, p.models, style=snakemake.input.style, out_paths=[out.png, out.pdf])
atomic_write_text(out.csv, drawn.to_csv(index=False, float_format="%.6g"))
atomic_write_text(out.caption, Path(p.about).read_text().strip() + "\n\n" + decoded(sel) + "\n")
