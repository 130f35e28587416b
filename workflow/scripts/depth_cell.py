"""Decode at one context depth with profiling off (edgemoe.profiling)."""
import json
from pathlib import Path

from edgemoe.cells import base_record, cell_spec
from edgemoe.engine import binary
from edgemoe.files import atomic_path, write_jsonl
from edgemoe.profiling import PROFILER, run_profiler, step_records

p, w, out = snakemake.params, snakemake.wildcards, snakemake.output
spec = cell_spec(
    cell_id=p.cell_id, device_id=w.device, device=p.device, exe=binary(snakemake.input.build, PROFILER),
    gguf=snakemake.input.gguf, model_info_path=snakemake.input.model_info, build_info_path=snakemake.input.build,
    test=f"depth{w.depth}", n_prompt=int(w.depth), n_gen=p.settings["n_gen"], repetitions=1, use_mmap=p.use_mmap, timeout_s=p.timeout_s)
run = run_profiler(spec, spec.bench_exe, p.settings["warmup"], False, Path(out.summary + ".tmp"), None,
                   Path(snakemake.log[0]), Path(p.lock))
records = step_records(base_record(spec, run.result), run, "depth", f"depth{w.depth}")
with atomic_path(out.summary) as tmp:
    tmp.write_text(json.dumps(run.summary or {"status": run.status, "reason": run.reason}, indent=2))
Path(out.summary + ".tmp").unlink(missing_ok=True)
write_jsonl(out.records, records)
