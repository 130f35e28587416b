"""Run one benchmark cell, in a block or in a round (edgemoe.cells.run_bench_cell), and write its
records; a round cell's records carry its round, position, seed, design and warm-up flag."""
from pathlib import Path

from edgemoe.cells import cell_spec, run_bench_cell
from edgemoe.engine import binary
from edgemoe.files import write_jsonl

p, w, i = snakemake.params, snakemake.wildcards, snakemake.input
in_cgroup, emulated_bytes, use_mmap = p.memory_regime
spec = cell_spec(
    cell_id=p.cell_id, device_id=w.device, device=p.device, exe=binary(i.build, "llama-bench"), gguf=i.gguf,
    model_info_path=i.model_info, build_info_path=i.build, test=w.test, n_prompt=p.test.n_prompt,
    n_gen=p.test.n_gen, repetitions=p.repetitions, use_mmap=use_mmap, timeout_s=p.timeout_s,
    memory_limit_gb=p.memory_limit_gb, bandwidth_path=i.bandwidth, in_cgroup=in_cgroup,
    memory_emulated_bytes=emulated_bytes)
records = run_bench_cell(spec, Path(snakemake.output.raw), Path(snakemake.log[0]), Path(p.lock))
for r in records:  # a settling repetition (edgemoe.cells) stays warm-up in any round
    r.update({**p.rounds, "warmup": p.rounds["warmup"] or r.get("warmup", False)} if p.rounds else {})
write_jsonl(snakemake.output.records, records)
