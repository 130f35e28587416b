"""One prompt-driven cell (edgemoe.prompt_cells.run_prompt_cell): llama-cli on every prompt of the
set, two records per run (prompt and generation) with the footer's numbers and token arrival gaps."""
from pathlib import Path

from edgemoe.cells import cell_spec
from edgemoe.engine import binary
from edgemoe.files import write_jsonl
from edgemoe.prompt_cells import PROGRAM, run_prompt_cell
from edgemoe.prompts import read_prompts

p, w, i = snakemake.params, snakemake.wildcards, snakemake.input
s = p.settings
_, _, use_mmap = p.memory_regime
spec = cell_spec(
    cell_id=p.cell_id, device_id=w.device, device=p.device, exe=binary(i.build, PROGRAM), gguf=i.gguf,
    model_info_path=i.model_info, build_info_path=i.build, test=w.test, n_prompt=0, n_gen=s["n_gen"],
    repetitions=s["repetitions"], use_mmap=use_mmap, timeout_s=p.timeout_s, memory_limit_gb=p.memory_limit_gb,
    bandwidth_path=i.bandwidth)
records = run_prompt_cell(spec, spec.bench_exe, read_prompts(i.prompts), s["set"], s["seed"], s["repetitions"],
                          Path(snakemake.output.raw), Path(snakemake.log[0]), Path(p.lock))
for r in records:
    r.update(p.rounds or {})
write_jsonl(snakemake.output.records, records)
