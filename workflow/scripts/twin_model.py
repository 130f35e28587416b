"""Write a model's shape twin and quantize it to every configured type (edgemoe.models)."""
import sys
from pathlib import Path

from edgemoe.engine import binary
from edgemoe.models import make_twin_ggufs

sys.stderr = open(snakemake.log[0], "w")
w = snakemake.wildcards
make_twin_ggufs(
    model_id=w.model, spec_cfg=snakemake.params.spec, seed=snakemake.params.seed,
    quants=snakemake.params.quants, out_dir=Path(snakemake.output.ggufs[0]).parent,
    engine_src=Path(snakemake.input.source).parent / "source",
    quantize_exe=binary(snakemake.input.tools, "llama-quantize"), threads=snakemake.threads,
    vocab_cache=Path("results/vocab"), router_skew=snakemake.params.router_skew,
)
