"""Download a pinned Hugging Face revision (edgemoe.hub); the token comes from HF_TOKEN only."""
import sys
from pathlib import Path

from edgemoe.files import atomic_write_json
from edgemoe.hub import download_model

sys.stderr = open(snakemake.log[0], "w")
out = Path(snakemake.output.info)
info = download_model(snakemake.wildcards.model, snakemake.params.repo, snakemake.params.revision,
                      out.parent / "snapshot")
atomic_write_json(out, info)
