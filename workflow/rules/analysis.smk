# Run table -> tables and figures. With runs=released nothing upstream is in the DAG.


def run_record_files(wildcards):
    """fresh: this device's cells (+ other devices' records on disk); released: the release only."""
    released = [EXP.release_file] if EXP.runs in ("released", "both") else []
    if EXP.runs == "released":
        fresh = []
    elif ROUNDS["enabled"]:
        fresh = []  # listed by the rounds' closing files (input rounds of collect_runs)
    else:
        fresh = EXP.cells(EXP.device_id) + EXP.other_device_records()
    if EXP.runs != "released":
        fresh += EXP.profile_cells(EXP.device_id) + ([] if DEPTH_IN_ROUNDS else EXP.depth_cells(EXP.device_id))
    return released + fresh


rule collect_runs:
    input:
        records=run_record_files,
        rounds=lambda w: [rounds_done_file()] + other_device_rounds_done()
        if ROUNDS["enabled"] and EXP.runs != "released" else [],
    output:
        "results/runs.parquet",
    log:
        "results/logs/collect_runs.log",
    script:
        "../scripts/collect_runs.py"


rule tables:
    params:
        baseline=EXP.baseline,
        models=list(EXP.models),
    input:
        "results/runs.parquet",
    output:
        csv=report("figures/tables/throughput.csv", caption="../report/throughput_table.rst", category="Tables"),
        md="figures/tables/throughput.md",
        tex="figures/tables/throughput.tex",
        provenance=report("figures/tables/provenance.csv", caption="../report/provenance.rst", category="Provenance"),
    log:
        "results/logs/tables.log",
    script:
        "../scripts/tables.py"


rule breakdown_table:
    input:
        "results/runs.parquet",
    output:
        csv=report("figures/tables/breakdown.csv", caption="../report/breakdown_table.rst", category="Tables"),
        md="figures/tables/breakdown.md",
    log:
        "results/logs/breakdown_table.log",
    script:
        "../scripts/breakdown_table.py"


rule depth_table:
    params:
        baseline=EXP.baseline,
    input:
        "results/runs.parquet",
    output:
        csv=report("figures/tables/depth.csv", caption="../report/depth.rst", category="Tables"),
        md="figures/tables/depth.md",
    log:
        "results/logs/depth_table.log",
    script:
        "../scripts/depth_table.py"


# One rule per figure (figure_<name>): PNG and PDF, the style file an input of each.
FIGURES = {
    "throughput": "throughput_figure",
    "gap": "gap_figure",
    "memory": "memory_figure",
    "energy": "energy_figure",
    "roofline": "roofline_figure",
    "breakdown": "breakdown_figure",
    "depth": "depth_figure",
}

for _name, _function in FIGURES.items():

    rule:
        name:
            f"figure_{_name}"
        params:
            function=_function,
            models=list(EXP.models),
            baseline=EXP.baseline,
        input:
            runs="results/runs.parquet",
            style="workflow/figures.mplstyle",
        output:
            png=report(f"figures/{_name}.png", caption=f"../report/{_name}.rst", category="Figures"),
            pdf=f"figures/{_name}.pdf",
        log:
            f"results/logs/figure_{_name}.log",
        script:
            "../scripts/figure.py"


rule figures_all:
    input:
        rules.tables.output,
        rules.breakdown_table.output,
        rules.depth_table.output,
        expand("figures/{name}.{ext}", name=FIGURES, ext=["png", "pdf"]),
        rules.fidelity_table.output if config.get("fidelity") else [],
        drift=lambda w: [f"figures/drift/{EXP.device_id}/{EXP.engine_id}.{e}" for e in ("png", "pdf")]
        if ROUNDS["enabled"] and EXP.runs != "released" else [],
    output:
        "figures/all",
    log:
        "results/logs/figures_all.log",
    script:
        "../scripts/figures_all.py"
