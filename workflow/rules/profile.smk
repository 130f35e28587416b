# Node-by-node decode timing (profile cells) and decode at context depth (depth cells), both with
# the edgemoe-profile program the node-timing patch adds to the engine. Serialised like bench cells.


def profiler_build(w):
    if "edgemoe-profile" not in EXP.engine["targets"]:
        raise WorkflowError(
            f"profiling needs engines.{EXP.engine_id}.targets to include edgemoe-profile "
            "(and the node-timing patch in engines.<id>.patches)"
        )
    return paths.build_info(w.engine, w.device)


rule profile_cell:
    input:
        build=profiler_build,
        gguf="results/models/{model}/{tag}/{quant}.gguf",
        model_info="results/models/{model}/{tag}/{quant}.json",
    output:
        records="results/profile/{device}/{engine}/{model}/{tag}/{quant}/profile.jsonl",
        rows="results/profile/{device}/{engine}/{model}/{tag}/{quant}/nodes.jsonl.gz",
        summary="results/profile/{device}/{engine}/{model}/{tag}/{quant}/summary.json",
        layers="results/profile/{device}/{engine}/{model}/{tag}/{quant}/layers.csv",
    log:
        "results/profile/{device}/{engine}/{model}/{tag}/{quant}/stderr.log",
    conda:
        "../../envs/pipeline.yaml"
    threads: all_cores
    resources:
        bench=1,
    params:
        cell_id=lambda w: f"{w.device}/{w.engine}/{w.model}/{w.tag}/{w.quant}/profile",
        device=lambda w: EXP.devices[w.device],
        settings=config["profiling"],
        use_mmap=EXP.use_mmap,
        timeout_s=EXP.timeout_s,
        lock=paths.BENCH_LOCK,
    script:
        "../scripts/profile_cell.py"


def depth_build(w):
    from edgemoe.depth import parse_test_name

    if parse_test_name(w.test)[2] == "edgemoe-profile":
        return profiler_build(w)
    return paths.build_info(w.engine, w.device)


rule depth_cell:
    input:
        build=depth_build,
        gguf="results/models/{model}/{tag}/{quant}.gguf",
        model_info="results/models/{model}/{tag}/{quant}.json",
    output:
        records="results/depth/{device}/{engine}/{model}/{tag}/{quant}/{test}.jsonl",
        summary="results/depth/{device}/{engine}/{model}/{tag}/{quant}/{test}.summary.json",
        raw=directory("results/depth/{device}/{engine}/{model}/{tag}/{quant}/{test}.raw"),
    log:
        "results/depth/{device}/{engine}/{model}/{tag}/{quant}/{test}.stderr.log",
    wildcard_constraints:
        test=r"depth\d+[-a-z0-9_]*",
    conda:
        "../../envs/pipeline.yaml"
    threads: all_cores
    resources:
        bench=1,
    params:
        cell_id=lambda w: f"{w.device}/{w.engine}/{w.model}/{w.tag}/{w.quant}/{w.test}",
        device=lambda w: EXP.devices[w.device],
        settings=config["depth"],
        use_mmap=EXP.use_mmap,
        timeout_s=EXP.timeout_s,
        lock=paths.BENCH_LOCK,
    script:
        "../scripts/depth_cell.py"
