"""One expert-locality run: edgemoe-profile --experts on every prompt of the set (edgemoe.locality_cells)."""

import json
import shutil
from pathlib import Path

from edgemoe.engine import binary
from edgemoe.files import atomic_write_json
from edgemoe.locality_cells import run_cell
from edgemoe.prompts import read_prompts
from edgemoe.locality_data import write_table
from edgemoe.profiling import PROFILER

p, w, out, inp = snakemake.params, snakemake.wildcards, snakemake.output, snakemake.input
work = Path(out.rows).with_suffix(".tmp.d")
try:
    table, summary = run_cell(
        exe=binary(inp.build, PROFILER),
        gguf=inp.gguf,
        model_info=json.loads(Path(inp.model_info).read_text()),
        build_info=json.loads(Path(inp.build).read_text()),
        device_id=w.device,
        device=p.device,
        prompts=read_prompts(inp.prompts),
        prompt_set=w.prompts,
        decode=w.decode,
        n_gen=p.n_gen,
        warmup=p.warmup,
        use_mmap=p.use_mmap,
        timeout_s=p.timeout_s,
        lock=p.lock,
        log=snakemake.log[0],
        work_dir=work,
    )
finally:
    shutil.rmtree(work, ignore_errors=True)
write_table(table, out.rows)
atomic_write_json(out.summary, summary)
