# Expert locality (config experiment.locality; edgemoe/locality_cells.py runs, edgemoe/locality.py
# analyses): each MoE layer's router top-k at every decode step, recorded by edgemoe-profile
# --experts (profiling off) while it decodes real prompt text. The rows go to their own table,
# results/locality.parquet, never to the run table; the locality table and figure are made from it.
# With runs=released (or both) they rebuild from the release's locality.jsonl.gz where it has one.
from pathlib import Path

from edgemoe.locality_cells import DECODE_MODES
from edgemoe.locality_cells import plan as locality_plan

try:
    LOCALITY = locality_plan(config, EXP.models)
except ConfigError as e:
    raise WorkflowError(f"Configuration error: {e}") from None
_released = Path(EXP.release_file).with_name("locality.jsonl.gz") if EXP.release_file else None
LOCALITY_RELEASED = [str(_released)] if _released and _released.is_file() else []
LOCALITY_FRESH = LOCALITY.cells(EXP.device_id, EXP.engine_id, EXP.quants) if MEASURING else []
LOCALITY_TWINS = LOCALITY.twins_to_write(EXP.models) if MEASURING else {}
LOCALITY_OUTPUTS = (
    [
        "figures/tables/locality.csv",
        "figures/tables/locality.md",
        "figures/tables/locality_usage.csv",
        *(paths.figure("locality", ext) for ext in ("png", "pdf", "csv")),
    ]
    if LOCALITY_FRESH or LOCALITY_RELEASED
    else []
)


# Skewed twins M@skew<s> that are not models of the experiment: the twin rule with their settings.
use rule twin_model as locality_twin_model with:
    wildcard_constraints:
        model="|".join(map(re.escape, LOCALITY_TWINS)) or NOTHING,
    params:
        spec=lambda w: LOCALITY.models[w.model].spec_config,
        seed=lambda w: LOCALITY.models[w.model].twin_seed,
        router_skew=lambda w: LOCALITY.models[w.model].router_skew,


rule locality_cell:
    input:
        build=profiler_build,
        gguf="results/models/{model}/{tag}/{quant}.gguf",
        model_info="results/models/{model}/{tag}/{quant}.json",
        prompts=LOCALITY.prompts_path,
    output:
        rows=paths.locality_cell("{device}", "{engine}", "{model}", "{tag}", "{quant}", "{decode}", "{prompts}"),
        summary=paths.locality_cell(
            "{device}", "{engine}", "{model}", "{tag}", "{quant}", "{decode}", "{prompts}", ext="json"
        ),
    log:
        paths.locality_cell("{device}", "{engine}", "{model}", "{tag}", "{quant}", "{decode}", "{prompts}", ext="log"),
    wildcard_constraints:
        model="|".join(map(re.escape, LOCALITY.models)) or NOTHING,
        decode="|".join(DECODE_MODES),
        prompts=re.escape(LOCALITY.prompt_set),
    conda:
        "../../envs/pipeline.yaml"
    threads: all_cores
    resources:
        bench=1,
    params:
        device=lambda w: EXP.devices[w.device],
        n_gen=LOCALITY.n_gen,
        warmup=LOCALITY.warmup,
        use_mmap=EXP.use_mmap,
        timeout_s=EXP.timeout_s,
        lock=paths.BENCH_LOCK,
    script:
        "../scripts/locality_cell.py"


rule collect_locality:
    input:
        LOCALITY_RELEASED + LOCALITY_FRESH,
    output:
        paths.LOCALITY_TABLE,
    log:
        "results/logs/collect_locality.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/collect_locality.py"


rule locality_table:
    input:
        paths.LOCALITY_TABLE,
    output:
        csv=report("figures/tables/locality.csv", caption="../report/locality_table.rst", category="Tables"),
        md="figures/tables/locality.md",
        usage="figures/tables/locality_usage.csv",
    log:
        "results/logs/locality_table.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/locality_table.py"


rule figure_locality:
    input:
        locality=paths.LOCALITY_TABLE,
        style="workflow/figures.mplstyle",
    output:
        png=report(paths.figure("locality", "png"), caption="../../figures/captions/locality.rst", category="Figures"),
        pdf=paths.figure("locality", "pdf"),
        csv=paths.figure("locality", "csv"),
        caption="figures/captions/locality.rst",
    log:
        "results/logs/figure_locality.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        function="locality_figure",
        models=list(LOCALITY.models),
        about="workflow/report/locality.rst",
    script:
        "../scripts/locality_figure.py"


rule locality_all:
    input:
        LOCALITY_OUTPUTS,
