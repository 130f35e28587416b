"""Benchmark a real GGUF against its twin, alternating (edgemoe.fidelity)."""
import json
import sys
from pathlib import Path

from edgemoe.engine import binary
from edgemoe.fidelity import run_fidelity
from edgemoe.files import atomic_write_json, write_jsonl

sys.stderr = open(snakemake.log[0], "w")
p = snakemake.params
out = Path(snakemake.output.summary)
summary, records = run_fidelity(
    Path(p.real), out.parent / "work", binary(snakemake.input.tools, "llama-quantize"),
    binary(snakemake.input.build, "llama-bench"), json.loads(Path(snakemake.input.build).read_text()),
    p.device, snakemake.wildcards.device, p.rounds, p.n_prompt, p.n_gen, p.seed, p.use_mmap, p.timeout_s,
    Path(p.lock), engine_src=Path(snakemake.input.tools).parents[2] / "source")  # results/engine/<id>/source
write_jsonl(snakemake.output.records, records)
atomic_write_json(out, summary)
