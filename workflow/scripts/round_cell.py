"""Run one round cell: one llama-bench invocation of `experiment.rounds.repetitions` repetitions
(edgemoe.cells.run_bench_cell); records carry the round, its position and the order's seed."""
from pathlib import Path

from edgemoe.cells import cell_spec, run_bench_cell
from edgemoe.engine import binary
from edgemoe.files import write_jsonl

p, w, i = snakemake.params, snakemake.wildcards, snakemake.input
spec = cell_spec(
    cell_id=p.cell_id, device_id=w.device, device=p.device, exe=binary(i.build, "llama-bench"), gguf=i.gguf,
    model_info_path=i.model_info, build_info_path=i.build, test=w.test, n_prompt=p.test.n_prompt,
    n_gen=p.test.n_gen, repetitions=p.repetitions, use_mmap=p.use_mmap, timeout_s=p.timeout_s,
    memory_limit_gb=p.memory_limit_gb)
records = run_bench_cell(spec, Path(snakemake.output.raw), Path(snakemake.log[0]), Path(p.lock))
for r in records:
    r.update(round=p.round, round_position=p.position, round_seed=p.seed)
write_jsonl(snakemake.output.records, records)
