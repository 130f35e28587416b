"""Profile one model's decode node by node and record one row per step (edgemoe.profiling, nodes)."""
import gzip
import json
import shutil
from pathlib import Path

from edgemoe.cells import base_record, cell_spec
from edgemoe.engine import binary
from edgemoe.files import atomic_path, atomic_write_text, write_jsonl
from edgemoe.nodes import read_rows
from edgemoe.profiling import (
    PROFILER,
    add_node_classes,
    layer_table,
    run_profiler,
    step_records,
)

p, w, out = snakemake.params, snakemake.wildcards, snakemake.output
spec = cell_spec(
    cell_id=p.cell_id, device_id=w.device, device=p.device, exe=binary(snakemake.input.build, PROFILER),
    gguf=snakemake.input.gguf, model_info_path=snakemake.input.model_info, build_info_path=snakemake.input.build,
    test="profile", n_prompt=p.settings["n_prompt"], n_gen=p.settings["n_gen"], repetitions=1, use_mmap=p.use_mmap, timeout_s=p.timeout_s)
rows_tmp = Path(out.rows).with_suffix(".tmp")
run = run_profiler(spec, spec.bench_exe, p.settings["warmup"], True, Path(out.summary + ".tmp"), rows_tmp,
                   Path(snakemake.log[0]), Path(p.lock))
records = step_records(base_record(spec, run.result), run, "profile", "profile")
if run.status == "ok":
    nodes = read_rows(rows_tmp)  # read and classified once, for the records and the layer table
    records = add_node_classes(records, nodes, run.summary)
    atomic_write_text(out.layers, layer_table(nodes).to_csv(index=False, float_format="%.6g"))
else:
    atomic_write_text(out.layers, f"status,reason\n{run.status},{run.reason}\n")
with atomic_path(out.rows) as tmp, open(rows_tmp if rows_tmp.exists() else "/dev/null", "rb") as src, \
        gzip.open(tmp, "wb") as dst:
    shutil.copyfileobj(src, dst)
rows_tmp.unlink(missing_ok=True)
with atomic_path(out.summary) as tmp:
    tmp.write_text(json.dumps(run.summary or {"status": run.status, "reason": run.reason}, indent=2))
Path(out.summary + ".tmp").unlink(missing_ok=True)
write_jsonl(out.records, records)
