# Twin fidelity (optional: config `fidelity.real`): a real GGUF against its twin, alternating.


rule fidelity:
    input:
        real=lambda w: ancient(config["fidelity"]["real"]),
        build=lambda w: paths.build_info(EXP.engine_id, w.device),
        tools=ancient(f"results/engine/{EXP.engine_id}/build/tools/build-info.json"),
    output:
        summary="results/fidelity/{device}/summary.json",
        records="results/fidelity/{device}/records.jsonl",
    log:
        "results/logs/fidelity/{device}.log",
    conda:
        "../../envs/pipeline.yaml"
    threads: all_cores
    resources:
        bench=1,
    params:
        real=lambda w: config["fidelity"]["real"],
        seed=lambda w: config["fidelity"]["seed"],
        rounds=lambda w: config["fidelity"]["rounds"],
        n_prompt=lambda w: config["fidelity"]["n_prompt"],
        n_gen=lambda w: config["fidelity"]["n_gen"],
        device=lambda w: EXP.devices[w.device],
        use_mmap=EXP.use_mmap,
        timeout_s=EXP.timeout_s,
        lock=paths.BENCH_LOCK,
    script:
        "../scripts/fidelity.py"


rule fidelity_table:
    input:
        expand("results/fidelity/{device}/summary.json", device=EXP.device_id),
    output:
        md=report("figures/tables/fidelity.md", caption="../report/fidelity.rst", category="Tables"),
        csv="figures/tables/fidelity.csv",
    log:
        "results/logs/fidelity_table.log",
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/fidelity_table.py"
