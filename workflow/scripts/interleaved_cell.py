"""One interleaved round cell (edgemoe.interleave.run_interleaved_cell): every model of the round
decoding in one process, turn by turn; one record per model and repetition, with the round's fields."""
from pathlib import Path

from edgemoe.cells import cell_spec
from edgemoe.engine import binary
from edgemoe.files import write_jsonl
from edgemoe.interleave import PROGRAM, run_interleaved_cell

p, w, i = snakemake.params, snakemake.wildcards, snakemake.input
_, _, use_mmap = p.memory_regime
specs = [
    cell_spec(
        cell_id=cid, device_id=w.device,
        device=p.device, exe=binary(i.build, PROGRAM), gguf=gguf, model_info_path=info, build_info_path=i.build,
        test=w.test, n_prompt=0, n_gen=p.test.n_gen, repetitions=p.repetitions, use_mmap=use_mmap,
        timeout_s=p.timeout_s, memory_limit_gb=p.memory_limit_gb, bandwidth_path=i.bandwidth)
    for cid, gguf, info in zip(p.cell_ids, i.gguf, i.model_info)
]
records = run_interleaved_cell(specs, p.test.interleave, p.order, Path(snakemake.output.raw),
                               Path(snakemake.log[0]), Path(p.lock))
for r in records:
    r.update(p.rounds)
write_jsonl(snakemake.output.records, records)
