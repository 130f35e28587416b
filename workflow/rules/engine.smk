# The pinned llama.cpp: fetch and patch once per engine, build per variant
# ("tools" quantizes on the host CPU; a device id builds with that device's backend flags).


rule engine_source:
    output:
        info="results/engine/{engine}/source.json",
        tree=directory("results/engine/{engine}/source"),
    log:
        "results/logs/engine_source/{engine}.log",
    conda:
        "../../envs/pipeline.yaml"
    params:
        engine=lambda w: config["engines"][w.engine],
        patches=lambda w: patch_hashes(w.engine),
        download_cache="results/downloads",
    script:
        "../scripts/engine_source.py"


rule engine_build:
    input:
        source="results/engine/{engine}/source.json",
    output:
        info="results/engine/{engine}/build/{variant}/build-info.json",
    log:
        "results/logs/engine_build/{engine}-{variant}.log",
    conda:
        "../../envs/pipeline.yaml"
    threads: lambda w: min(max(workflow.cores, 1), 8)  # make -j
    params:
        flags=lambda w: EXP.build_flags(w.variant),
        targets=lambda w: config["engines"][w.engine]["targets"],
    script:
        "../scripts/engine_build.py"
