"""Fetch, verify and patch the engine source (edgemoe.engine.prepare_source); check that it knows
every model's architecture where it runs cells (edgemoe.engine_axis)."""
import sys
from pathlib import Path

from edgemoe.config import Experiment
from edgemoe.engine import prepare_source
from edgemoe.engine_axis import check_architectures
from edgemoe.files import atomic_write_json

sys.stderr = open(snakemake.log[0], "w")
info = prepare_source(snakemake.wildcards.engine, snakemake.params.engine, Path("patches"),
                      Path(snakemake.output.tree), Path(snakemake.params.download_cache))
# A fresh clone has no tree at pre-flight: the first look at it names a model the engine cannot load.
# The models come from the config, not from params: a params change would refetch and rebuild the
# engine whenever the experiment's models change.
exp = Experiment(snakemake.config)
if snakemake.wildcards.engine in exp.engine_ids:
    check_architectures(snakemake.wildcards.engine, Path(snakemake.output.tree),
                        {m: x.spec.arch for m, x in exp.models.items()})
atomic_write_json(snakemake.output.info, info)
print(f"engine {info['engine']}: commit {info['commit']}, patches {[p['name'] for p in info['patches']]}",
      file=sys.stderr)
