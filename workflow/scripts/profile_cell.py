"""Profile one model's decode node by node and record one row per step (edgemoe.profiling, nodes)."""
import gzip
import json
import shutil
from pathlib import Path

from edgemoe.cells import CellSpec, base_record
from edgemoe.engine import binary
from edgemoe.files import atomic_path, write_jsonl
from edgemoe.profiling import PROFILER, add_node_classes, run_profiler, step_records

p, w, out = snakemake.params, snakemake.wildcards, snakemake.output
build_info = json.loads(Path(snakemake.input.build).read_text())
spec = CellSpec(
    cell_id=p.cell_id, device_id=w.device, backend=p.device.backend, bench_exe=binary(snakemake.input.build, PROFILER),
    model_path=snakemake.input.gguf, model_info=json.loads(Path(snakemake.input.model_info).read_text()),
    build_info=build_info, test="profile", n_prompt=p.settings["n_prompt"], n_gen=p.settings["n_gen"], repetitions=1,
    threads=p.device.threads, n_gpu_layers=p.device.n_gpu_layers, use_mmap=p.use_mmap, timeout_s=p.timeout_s,
    memory_ceiling_bytes=p.device.memory_ceiling_bytes)
rows_tmp = Path(out.rows).with_suffix(".tmp")
run = run_profiler(spec, spec.bench_exe, p.settings["warmup"], True, Path(out.summary + ".tmp"), rows_tmp,
                   Path(snakemake.log[0]), Path(p.lock))
records = step_records(base_record(spec, run.result), run, "profile", "profile")
if run.status == "ok":
    records = add_node_classes(records, rows_tmp, run.summary)
with atomic_path(out.rows) as tmp, open(rows_tmp if rows_tmp.exists() else "/dev/null", "rb") as src, \
        gzip.open(tmp, "wb") as dst:
    shutil.copyfileobj(src, dst)
rows_tmp.unlink(missing_ok=True)
with atomic_path(out.summary) as tmp:
    tmp.write_text(json.dumps(run.summary or {"status": run.status, "reason": run.reason}, indent=2))
Path(out.summary + ".tmp").unlink(missing_ok=True)
write_jsonl(out.records, records)
