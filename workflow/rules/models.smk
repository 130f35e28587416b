# Model files: a shape twin written from the architecture spec, or a Hugging Face checkpoint
# converted by the engine's own script, quantized by the pinned engine. The F16 is written,
# quantized to every configured type and deleted inside one job, so that at most one model's F16
# is on disk at a time.
# The engine's source and tools build are ancient(): a rebuilt or newly patched engine does not
# requantize gigabytes of models; a different engine commit does (it is a param). `models_engine`
# (default: engine) names the engine that makes them.


rule twin_model:
    input:
        source=ancient(f"results/engine/{EXP.models_engine_id}/source.json"),
        tools=ancient(f"results/engine/{EXP.models_engine_id}/build/tools/build-info.json"),
    output:
        ggufs=expand("results/models/{{model}}/{{tag}}/{quant}.gguf", quant=EXP.quants),
        infos=expand("results/models/{{model}}/{{tag}}/{quant}.json", quant=EXP.quants),
    log:
        "results/logs/twin_model/{model}-{tag}.log",
    wildcard_constraints:
        tag=r"twin-s\d+-[0-9a-f]{8}",
    conda:
        "../../envs/pipeline.yaml"
    threads: lambda w: min(max(workflow.cores, 1), 4)  # llama-quantize threads
    params:
        spec=lambda w: EXP.models[w.model].spec_config,  # derived for counterfactual twins
        seed=lambda w: EXP.models[w.model].twin_seed,
        router_skew=lambda w: EXP.models[w.model].router_skew,
        quants=EXP.quants,
        engine_commit=EXP.models_engine.get("commit") or EXP.models_engine["source"],
    script:
        "../scripts/twin_model.py"


rule hf_download:
    output:
        info="results/hf/{model}/{tag}/download.json",
    log:
        "results/logs/hf_download/{model}-{tag}.log",
    wildcard_constraints:
        tag=r"hf-[A-Za-z0-9._-]+",
    conda:
        "../../envs/pipeline.yaml"
    params:
        repo=lambda w: config["models"][w.model]["hf"]["repo"],
        revision=lambda w: config["models"][w.model]["hf"]["revision"],
    script:
        "../scripts/hf_download.py"


rule converted_model:
    input:
        unpack(lambda w: EXP.weights_rule_input(w.model)),
        source=f"results/engine/{EXP.models_engine_id}/source.json",
        tools=f"results/engine/{EXP.models_engine_id}/build/tools/build-info.json",
    output:
        ggufs=expand("results/models/{{model}}/{{tag}}/{quant}.gguf", quant=EXP.quants),
        infos=expand("results/models/{{model}}/{{tag}}/{quant}.json", quant=EXP.quants),
    log:
        "results/logs/converted_model/{model}-{tag}.log",
    wildcard_constraints:
        tag=r"(hf|local)-[A-Za-z0-9._-]+",
    conda:
        "../../envs/pipeline.yaml"
    threads: lambda w: min(max(workflow.cores, 1), 4)
    params:
        spec=lambda w: config["models"][w.model]["spec"],
        weights=lambda w: EXP.models[w.model].weights,
        quants=EXP.quants,
        engine_commit=EXP.models_engine.get("commit") or EXP.models_engine["source"],
    script:
        "../scripts/converted_model.py"
