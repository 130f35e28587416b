"""Run one benchmark cell, in a block or in a round (edgemoe.cells.run_bench_cell), and write its
records; a round cell's records carry its round, position, seed, design and warm-up flag."""
from pathlib import Path

from edgemoe.cells import cell_spec, run_bench_cell
from edgemoe.engine import binary
from edgemoe.files import write_jsonl

p, w, i = snakemake.params, snakemake.wildcards, snakemake.input
spec = cell_spec(
    cell_id=p.cell_id, device_id=w.device, device=p.device, exe=binary(i.build, "llama-bench"), gguf=i.gguf,
    model_info_path=i.model_info, build_info_path=i.build, test=w.test, n_prompt=p.test.n_prompt,
    n_gen=p.test.n_gen, repetitions=p.repetitions, use_mmap=p.use_mmap, timeout_s=p.timeout_s,
    memory_limit_gb=p.memory_limit_gb, bandwidth_path=i.bandwidth)
records = run_bench_cell(spec, Path(snakemake.output.raw), Path(snakemake.log[0]), Path(p.lock))
for r in records:
    r.update(p.rounds or {})
write_jsonl(snakemake.output.records, records)
