"""Build only the configured targets of the engine (edgemoe.engine.build)."""
import json
import sys
from pathlib import Path

from edgemoe.engine import build, write_build_info

sys.stderr = open(snakemake.log[0], "w")
source_info = json.loads(Path(snakemake.input.source).read_text())
out = Path(snakemake.output.info)
info = build(Path(snakemake.input.source).parent / "source", out.parent, snakemake.params.flags,
             snakemake.params.targets, snakemake.threads, source_info, log=Path(snakemake.log[0] + ".cmake"))
info["variant"] = snakemake.wildcards.variant
write_build_info(info, out)
print(json.dumps(info, indent=2), file=sys.stderr)
