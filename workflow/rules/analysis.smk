# Run table -> tables and figures. With runs=released nothing upstream is in the DAG.
# Every figure writes the numbers it draws beside it (figures/<name>.csv) and a caption made from
# the methods of those numbers (figures/captions/<name>.rst); a figure whose data the run table
# cannot hold (depth cells when depth is off, ...) is not built.
from edgemoe.release import data_kinds, model_kinds


def run_record_files(wildcards):
    """fresh: this device's cells (+ other devices' records on disk); released: the release only."""
    released = [EXP.release_file] if EXP.runs in ("released", "both") else []
    if not MEASURING:
        fresh = []
    elif ROUNDS["enabled"]:
        fresh = []  # listed by the rounds' closing files (input rounds of collect_runs)
    else:
        fresh = EXP.cells(EXP.device_id) + EXP.prompt_cells(EXP.device_id) + EXP.other_device_records()
    if MEASURING:
        fresh += EXP.profile_cells(EXP.device_id) + ([] if DEPTH_IN_ROUNDS else EXP.depth_cells(EXP.device_id))
    return released + fresh


def run_table_kinds():
    """What the run table will hold: from the config for fresh runs, from the release for released."""
    kinds = set()
    if MEASURING:
        kinds.add("bench")
        kinds |= {"profile"} if config.get("profiling", {}).get("enabled") else set()
        kinds |= {"depth"} if config.get("depth", {}).get("enabled") else set()
        kinds |= {"rounds"} if ROUNDS["enabled"] else set()
        kinds |= {"prompt"} if EXP.prompt_tests() else set()
        kinds |= {"engines"} if len(EXP.engine_ids) > 1 else set()
        kinds |= model_kinds(EXP.models)
        kinds |= {"regimes"} if EXP.regimes or (EXP.device and EXP.device.emulate_memory_bytes) else set()
    kinds |= UNION_KINDS  # runs=union: the snapshots' manifests say what their records hold (store.smk)
    if EXP.release_file:
        try:
            kinds |= data_kinds(EXP.release_file)
        except ValueError as e:
            raise WorkflowError(f"Release error: {e}") from None
    return kinds


KINDS = run_table_kinds()
if KINDS & {"prompt", "profile"}:  # per-token latency from prompt runs and profiled decode steps
    KINDS.add("latency")


rule collect_runs:
    input:
        records=run_record_files,
        rounds=lambda w: [rounds_done_file()] + other_device_rounds_done() if ROUNDS["enabled"] and MEASURING else [],
        union=lambda w: union_snapshot_files(),  # runs=union (store.smk): fetched snapshots
    output:
        paths.RUN_TABLE,
        **({"union": paths.UNION_SUMMARY} if UNION else {}),
    log:
        "results/logs/collect_runs.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/collect_runs.py"


rule tables:
    input:
        paths.RUN_TABLE,
    output:
        csv=report(
            "figures/tables/throughput.csv", caption="../../figures/captions/throughput_table.rst", category="Tables"
        ),
        md="figures/tables/throughput.md",
        tex="figures/tables/throughput.tex",
        caption="figures/captions/throughput_table.rst",
        provenance=report("figures/tables/provenance.csv", caption="../report/provenance.rst", category="Provenance"),
    log:
        "results/logs/tables.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        baseline=EXP.baseline,
        models=list(EXP.models),
        snapshots=UNION_SNAPSHOTS,  # runs=union: each device's snapshot id in the provenance table
    script:
        "../scripts/tables.py"


rule breakdown_table:
    input:
        paths.RUN_TABLE,
    output:
        csv=report("figures/tables/breakdown.csv", caption="../report/breakdown_table.rst", category="Tables"),
        md="figures/tables/breakdown.md",
    log:
        "results/logs/breakdown_table.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/breakdown_table.py"


rule moe_effect_table:
    input:
        paths.RUN_TABLE,
    output:
        csv=report("figures/tables/moe_effect.csv", caption="../report/moe_effect_table.rst", category="Tables"),
        md="figures/tables/moe_effect.md",
    log:
        "results/logs/moe_effect_table.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        baseline=EXP.baseline,
    script:
        "../scripts/moe_effect_table.py"


rule regimes_table:
    input:
        paths.RUN_TABLE,
    output:
        csv=report("figures/tables/regimes.csv", caption="../report/regimes_table.rst", category="Tables"),
        md="figures/tables/regimes.md",
    log:
        "results/logs/regimes_table.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        baseline=EXP.baseline,
        models=list(EXP.models),
    script:
        "../scripts/regimes_table.py"


rule method_tables:
    """The study's method beside llama-bench (method.*) and per-token latency (latency.*)."""
    input:
        paths.RUN_TABLE,
    output:
        method_csv=report("figures/tables/method.csv", caption="../report/method_table.rst", category="Tables"),
        method_md="figures/tables/method.md",
        latency_csv=report("figures/tables/latency.csv", caption="../report/latency_table.rst", category="Tables"),
        latency_md="figures/tables/latency.md",
    log:
        "results/logs/method_tables.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        models=list(EXP.models),
    script:
        "../scripts/method_tables.py"


rule engines_table:
    """Engines compared on the same model files (edgemoe/engines_compare.py)."""
    input:
        paths.RUN_TABLE,
    output:
        csv=report("figures/tables/engines.csv", caption="../report/engines_table.rst", category="Tables"),
        md="figures/tables/engines.md",
    log:
        "results/logs/engines_table.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        baseline=EXP.baseline,
        engines=EXP.engine_ids,
    script:
        "../scripts/engines_table.py"


rule depth_table:
    input:
        paths.RUN_TABLE,
    output:
        csv=report("figures/tables/depth.csv", caption="../../figures/captions/depth_table.rst", category="Tables"),
        md="figures/tables/depth.md",
        caption="figures/captions/depth_table.rst",
    log:
        "results/logs/depth_table.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        baseline=EXP.baseline,
    script:
        "../scripts/depth_table.py"


# One rule per figure (figure_<name>): PNG, PDF, the numbers drawn (CSV) and the caption; the style
# file an input of each. name: (function in edgemoe.figures, what the run table must hold).
FIGURES = {
    "throughput": ("throughput_figure", "bench"),
    "gap": ("gap_figure", "bench"),
    "memory": ("memory_figure", "bench"),
    "energy": ("energy_figure", "bench"),
    "roofline": ("roofline_figure", "bench"),
    "breakdown": ("breakdown_figure", "profile"),
    "depth": ("depth_figure", "depth"),
    "drift": ("drift_figure", "rounds"),
    "moe_effect": ("moe_effect_figure", "counterfactual"),
    "sweep": ("sweep_figure", "sweep"),
    "ceilings": ("ceilings_figure", "regimes"),
    "latency": ("latency_figure", "latency"),
    "engines": ("engines_figure", "engines"),
}
FIGURES_BUILT = [name for name, (_, needs) in FIGURES.items() if needs in KINDS]

for _name, (_function, _needs) in FIGURES.items():

    rule:
        name:
            f"figure_{_name}"
        input:
            runs=paths.RUN_TABLE,
            style="workflow/figures.mplstyle",
        output:
            png=report(paths.figure(_name, "png"), caption=f"../../figures/captions/{_name}.rst", category="Figures"),
            pdf=paths.figure(_name, "pdf"),
            csv=paths.figure(_name, "csv"),
            caption=f"figures/captions/{_name}.rst",
        log:
            f"results/logs/figure_{_name}.log",
        conda:
            "../../envs/analysis.yaml"
        params:
            function=_function,
            models=list(EXP.models),
            baseline=EXP.baseline,
            engines=EXP.engine_ids,
            about=f"workflow/report/{_name}.rst",
        script:
            "../scripts/figure.py"


rule figures_all:
    input:
        rules.tables.output,
        rules.breakdown_table.output if "profile" in KINDS else [],
        rules.depth_table.output if "depth" in KINDS else [],
        rules.moe_effect_table.output if "counterfactual" in KINDS else [],
        rules.regimes_table.output if "regimes" in KINDS else [],
        rules.method_tables.output if "latency" in KINDS else [],
        rules.engines_table.output if "engines" in KINDS else [],
        expand("figures/{name}.{ext}", name=FIGURES_BUILT, ext=["png", "pdf", "csv"]),
        rules.fidelity_table.output if config.get("fidelity") else [],
        LOCALITY_OUTPUTS,  # workflow/rules/locality.smk: expert locality table and figure
    output:
        "figures/all",
    log:
        "results/logs/figures_all.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/figures_all.py"


rule release_headline:
    """The shipped release's headline, as the DAG makes it from the release (runs=released): the
    throughput table, the gap figure with its numbers and the MoE-effect table, kept beside the records so that the
    README can show them (tests/test_release.py checks they still match)."""
    input:
        **(
            {"effect": "figures/tables/moe_effect.md", "effect_csv": "figures/tables/moe_effect.csv"}
            if "counterfactual" in KINDS
            else {}
        ),
        table="figures/tables/throughput.md",
        table_csv="figures/tables/throughput.csv",
        gap="figures/gap.png",
        gap_csv="figures/gap.csv",
    output:
        **(
            {
                "effect": f"data/released/{config.get('release')}/moe_effect.md",
                "effect_csv": f"data/released/{config.get('release')}/moe_effect.csv",
            }
            if "counterfactual" in KINDS
            else {}
        ),
        table=f"data/released/{config.get('release')}/throughput.md",
        table_csv=f"data/released/{config.get('release')}/throughput.csv",
        gap=f"data/released/{config.get('release')}/gap.png",
        gap_csv=f"data/released/{config.get('release')}/gap.csv",
    log:
        "results/logs/release_headline.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/release_headline.py"
