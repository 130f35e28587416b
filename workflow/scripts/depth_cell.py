"""Decode at one context depth (edgemoe.depth: llama-bench -d, or edgemoe-profile with profiling off)."""
import json
from pathlib import Path

from edgemoe.cells import cell_spec
from edgemoe.engine import binary
from edgemoe.depth import parse_test_name, run_depth_cell, write_summary
from edgemoe.files import write_jsonl

p, w, out = snakemake.params, snakemake.wildcards, snakemake.output
depth, cache_type, method = parse_test_name(w.test)
tools = {name: binary(snakemake.input.build, name) for name in json.loads(Path(snakemake.input.build).read_text())["binaries"]}
spec = cell_spec(
    cell_id=p.cell_id, device_id=w.device, device=p.device, exe=tools["llama-bench"],
    gguf=snakemake.input.gguf, model_info_path=snakemake.input.model_info, build_info_path=snakemake.input.build,
    test=w.test, n_prompt=depth, n_gen=p.settings["n_gen"], repetitions=p.settings["repetitions"],
    use_mmap=p.use_mmap, timeout_s=p.timeout_s)
raw = Path(out.raw)
raw.mkdir(parents=True, exist_ok=True)
records = run_depth_cell(spec, method=method, depth=depth, cache_type=cache_type,
                         repetitions=p.settings["repetitions"], tools=tools, out_dir=raw,
                         stderr_path=Path(snakemake.log[0]), lock_path=Path(p.lock))
for r in records:  # a depth cell inside the rounds (rules/rounds.smk) says which round
    r.update(getattr(p, "rounds", None) or {})
write_summary(Path(out.summary), records)
write_jsonl(out.records, records)
