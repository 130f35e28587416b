"""One figure from the run table (edgemoe.figures.<params.function>): PNG and PDF, the numbers it
draws as CSV beside it, and its caption (what it shows, then the methods of those numbers)."""
import inspect
import sys
from pathlib import Path

from edgemoe import figures
from edgemoe.estimates import describe, warmup_rows
from edgemoe.files import atomic_write_text
from edgemoe.records import read_parquet

sys.stderr = open(snakemake.log[0], "w")
p, out = snakemake.params, snakemake.output
runs = read_parquet(snakemake.input.runs).to_pandas()
draw = getattr(figures, p.function)
wants = inspect.signature(draw).parameters
extra = {k: getattr(p, k) for k in ("baseline", "engines") if k in wants}
drawn = draw(runs, p.models, style=snakemake.input.style, out_paths=[out.png, out.pdf], **extra)
finding = drawn.attrs.get("finding")  # a figure whose caption states its answer, from its numbers
atomic_write_text(out.csv, drawn.to_csv(index=False, float_format="%.6g"))
# the estimate methods of the numbers drawn: a column per mark, or a ';'-joined one (depth table rows)
column = "methods" if "methods" in drawn.columns else "method" if "method" in drawn.columns else None
methods = sorted({m for ms in drawn[column].dropna() for m in str(ms).split(";") if m}) if column else []
atomic_write_text(out.caption, Path(p.about).read_text().strip() + "\n\n" + (finding + "\n\n" if finding else "")
                  + (describe(methods, warmup_rows(runs)) + "\n" if methods else ""))
