"""Fetch, verify and patch the engine source (edgemoe.engine.prepare_source)."""
import sys
from pathlib import Path

from edgemoe.engine import prepare_source
from edgemoe.files import atomic_write_json

sys.stderr = open(snakemake.log[0], "w")
info = prepare_source(snakemake.wildcards.engine, snakemake.params.engine, Path("patches"),
                      Path(snakemake.output.tree), Path(snakemake.params.download_cache))
atomic_write_json(snakemake.output.info, info)
print(f"engine {info['engine']}: commit {info['commit']}, patches {[p['name'] for p in info['patches']]}",
      file=sys.stderr)
