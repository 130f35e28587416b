"""Run one round cell: one llama-bench invocation of `experiment.rounds.repetitions` repetitions
(edgemoe.cells.run_bench_cell); records carry the round where the run table has the fields."""
import json
from pathlib import Path

from edgemoe.cells import CellSpec, run_bench_cell
from edgemoe.engine import binary
from edgemoe.files import write_jsonl
from edgemoe.records import FIELDS

p, w = snakemake.params, snakemake.wildcards
build_info = json.loads(Path(snakemake.input.build).read_text())
limit = p.memory_limit_gb
spec = CellSpec(
    cell_id=p.cell_id, device_id=w.device, backend=p.device.backend,
    bench_exe=binary(snakemake.input.build, "llama-bench"), model_path=snakemake.input.gguf,
    model_info=json.loads(Path(snakemake.input.model_info).read_text()), build_info=build_info,
    test=w.test, n_prompt=p.test.n_prompt, n_gen=p.test.n_gen, repetitions=p.repetitions,
    threads=p.device.threads, n_gpu_layers=p.device.n_gpu_layers, use_mmap=p.use_mmap,
    timeout_s=p.timeout_s, memory_ceiling_bytes=p.device.memory_ceiling_bytes,
    energy_sampler=p.device.energy_sampler, memory_limit_bytes=int(limit * 1e9) if limit else None,
)
records = run_bench_cell(spec, Path(snakemake.output.raw), Path(snakemake.log[0]), Path(p.lock))
extra = {"round": p.round, "round_position": p.position, "round_seed": p.seed}
known = {name for name, *_ in FIELDS}
for r in records:
    r.update({k: v for k, v in extra.items() if k in known})
write_jsonl(snakemake.output.records, records)
