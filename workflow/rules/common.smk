# Config validation, the resolved experiment, and the paths every rule shares (edgemoe.paths).
import os
import re
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the edgemoe package, also without `pip install -e .`

from edgemoe import paths  # noqa: E402
from edgemoe.config import ConfigError, Experiment, check_device_is_here  # noqa: E402
from edgemoe.files import sha256_file  # noqa: E402

validate(config, "../../config/schema.yaml", set_default=True)  # relative to this file
try:
    EXP = Experiment(config)
    if EXP.runs not in ("released", "union"):  # union: snapshots from a store (store.smk)
        check_device_is_here(config, EXP.device_id)
except ConfigError as e:
    raise WorkflowError(f"Configuration error: {e}") from None

MEASURING = EXP.runs not in ("released", "union")  # released or union data: no build, model or cell rule can match
NOTHING = "(?!)"  # a wildcard constraint no value matches


wildcard_constraints:
    engine="|".join(map(re.escape, config["engines"])),
    # Cells and device builds only for the device selected here: other devices' records on disk
    # have no producer, so they are merged as they are and never rerun.
    device=re.escape(EXP.device_id) if MEASURING else NOTHING,
    variant=f"tools|{re.escape(EXP.device_id)}" if MEASURING else NOTHING,
    model="|".join(map(re.escape, EXP.models)),
    quant="|".join(map(re.escape, EXP.quants)),
    test="|".join(map(re.escape, [*EXP.tests, *EXP.depth_tests()])),


def patch_hashes(engine_id):
    """Patches by content, so that editing one rebuilds the engine."""
    return {p: sha256_file(os.path.join("patches", p)) for p in config["engines"][engine_id].get("patches", [])}


def all_cores(wildcards):
    """Every core Snakemake has, asked for when a job is made (not at parse time, so that
    `snakemake --unlock` works without --cores)."""
    return workflow.cores
