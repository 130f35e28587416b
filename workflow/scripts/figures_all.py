"""figures/all: the manifest of every table and figure built, with their sha256."""
import sys

from edgemoe.files import atomic_write_text, sha256_file

sys.stderr = open(snakemake.log[0], "w")
lines = [f"{sha256_file(p)}  {p}\n" for p in sorted(snakemake.input)]
atomic_write_text(snakemake.output[0], "".join(lines))
