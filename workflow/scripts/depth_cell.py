"""Decode at one context depth with profiling off (edgemoe.profiling)."""
import json
from pathlib import Path

from edgemoe.cells import CellSpec, base_record
from edgemoe.engine import binary
from edgemoe.files import atomic_path, write_jsonl
from edgemoe.profiling import PROFILER, run_profiler, step_records

p, w, out = snakemake.params, snakemake.wildcards, snakemake.output
spec = CellSpec(
    cell_id=p.cell_id, device_id=w.device, backend=p.device.backend, bench_exe=binary(snakemake.input.build, PROFILER),
    model_path=snakemake.input.gguf, model_info=json.loads(Path(snakemake.input.model_info).read_text()),
    build_info=json.loads(Path(snakemake.input.build).read_text()), test=f"depth{w.depth}", n_prompt=int(w.depth),
    n_gen=p.settings["n_gen"], repetitions=1, threads=p.device.threads, n_gpu_layers=p.device.n_gpu_layers,
    use_mmap=p.use_mmap, timeout_s=p.timeout_s, memory_ceiling_bytes=p.device.memory_ceiling_bytes)
run = run_profiler(spec, spec.bench_exe, p.settings["warmup"], False, Path(out.summary + ".tmp"), None,
                   Path(snakemake.log[0]), Path(p.lock))
records = step_records(base_record(spec, run.result), run, "depth", f"depth{w.depth}")
with atomic_path(out.summary) as tmp:
    tmp.write_text(json.dumps(run.summary or {"status": run.status, "reason": run.reason}, indent=2))
Path(out.summary + ".tmp").unlink(missing_ok=True)
write_jsonl(out.records, records)
