"""Convert a Hugging Face checkpoint (or take a local F16 GGUF) and quantize it (edgemoe.models)."""
import json
import sys
from pathlib import Path

from edgemoe.engine import binary
from edgemoe.models import make_converted_ggufs, make_local_gguf

sys.stderr = open(snakemake.log[0], "w")
p, w = snakemake.params, snakemake.wildcards
out_dir = Path(snakemake.output.ggufs[0]).parent
engine_src = Path(snakemake.input.source).parent / "source"
quantize_exe = binary(snakemake.input.tools, "llama-quantize")
if p.weights == "local" and Path(snakemake.input.local).suffix == ".gguf":
    make_local_gguf(w.model, p.spec, Path(snakemake.input.local), p.quants, out_dir, quantize_exe, snakemake.threads,
                    engine_src)
else:
    download = json.loads(Path(snakemake.input.download).read_text()) if p.weights == "hf" else None
    hf_dir = Path(snakemake.input.download).parent / "snapshot" if download else Path(snakemake.input.local)
    make_converted_ggufs(w.model, p.spec, p.weights, hf_dir, download, p.quants, out_dir, engine_src,
                         quantize_exe, snakemake.threads)
