# Benchmark cells: one job per (device, engine, model, weights, quant, test).
# A cell takes every core Snakemake has (nothing else runs beside a measurement) and the `bench`
# resource (limit 1 in profiles/default); a file lock backs both up.


rule bench_cell:
    params:
        cell_id=lambda w: f"{w.device}/{w.engine}/{w.model}/{w.tag}/{w.quant}/{w.test}",
        device=lambda w: EXP.devices[w.device],
        test=lambda w: EXP.tests[w.test],
        repetitions=EXP.repetitions,
        use_mmap=EXP.use_mmap,
        timeout_s=EXP.timeout_s,
        memory_limit_gb=config.get("cell_memory_limit_gb"),
        lock=BENCH_LOCK,
    input:
        build=lambda w: f"{build_dir(w.device)}/build-info.json",
        gguf="results/models/{model}/{tag}/{quant}.gguf",
        model_info="results/models/{model}/{tag}/{quant}.json",
        bandwidth="results/bandwidth/{device}.json",
    output:
        records="results/cells/{device}/{engine}/{model}/{tag}/{quant}/{test}.jsonl",
        raw="results/cells/{device}/{engine}/{model}/{tag}/{quant}/{test}.llama-bench.jsonl",
    log:
        "results/cells/{device}/{engine}/{model}/{tag}/{quant}/{test}.stderr.log",
    threads: workflow.cores
    resources:
        bench=1,
    script:
        "../scripts/bench_cell.py"


rule bandwidth:
    params:
        threads=lambda w: EXP.devices[w.device].threads,
        lock=BENCH_LOCK,
    input:
        source="workflow/bench/stream.c",
    output:
        "results/bandwidth/{device}.json",
    log:
        "results/logs/bandwidth/{device}.log",
    threads: workflow.cores
    resources:
        bench=1,
    script:
        "../scripts/bandwidth.py"
