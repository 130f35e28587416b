# Benchmark cells, one shape in both designs: one job per (device, engine, model, weights, quant,
# test), in a block (bench_cell, results/cells/) or in a round (round_cell in rounds.smk,
# results/rounds/). Both take CELL_PARAMS and cell_inputs, so they cannot drift apart.
# A cell takes every core Snakemake has (nothing else runs beside a measurement) and the `bench`
# resource (limit 1 in profiles/default); a file lock backs both up.

CELL_PARAMS = dict(
    device=lambda w: EXP.devices[w.device],
    test=lambda w: EXP.tests[w.test],
    # (in a memory cgroup, emulated bytes, use mmap) of the cell: edgemoe.regimes
    memory_regime=lambda w: EXP.memory_regime(w.device, w.test),
    timeout_s=EXP.timeout_s,
    memory_limit_gb=config.get("cell_memory_limit_gb"),
    lock=paths.BENCH_LOCK,
)


def cell_inputs(w):
    """What every bench cell reads: the device build, the model file and its sidecar, and the
    device's measured read bandwidth (the roofline of every record)."""
    return {
        "build": paths.build_info(w.engine, w.device),
        "gguf": paths.model_file(w.model, w.tag, w.quant),
        "model_info": paths.model_file(w.model, w.tag, w.quant, "json"),
        "bandwidth": paths.bandwidth(w.device),
    }


def cell_id(w, round=None):
    """The cell's id in records: device/engine/model/weights/quant/test[/r<round>]."""
    parts = [w.device, w.engine, w.model, w.tag, w.quant, w.test] + ([f"r{round}"] if round is not None else [])
    return "/".join(parts)


CELL = paths.cell_stem("{device}", "{engine}", "{model}", "{tag}", "{quant}", "{test}")


rule bench_cell:
    input:
        unpack(cell_inputs),
    output:
        records=f"{CELL}.jsonl",
        raw=f"{CELL}.llama-bench.jsonl",
    log:
        f"{CELL}.stderr.log",
    conda:
        "../../envs/pipeline.yaml"
    threads: all_cores
    resources:
        bench=1,
    params:
        **CELL_PARAMS,
        cell_id=cell_id,
        repetitions=EXP.repetitions,
        rounds=None,
    script:
        "../scripts/bench_cell.py"


rule bandwidth:
    input:
        source="workflow/bench/stream.c",
    output:
        paths.bandwidth("{device}"),
    log:
        "results/logs/bandwidth/{device}.log",
    conda:
        "../../envs/pipeline.yaml"
    threads: all_cores
    resources:
        bench=1,
    params:
        threads=lambda w: EXP.devices[w.device].threads,
        lock=paths.BENCH_LOCK,
    script:
        "../scripts/bandwidth.py"
