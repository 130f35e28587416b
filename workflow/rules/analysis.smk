# Run table -> tables and figures. With runs=released nothing upstream is in the DAG.


def run_record_files(wildcards):
    """fresh: this device's cells (+ other devices' records on disk); released: the release only."""
    released = [EXP.release_file] if EXP.runs in ("released", "both") else []
    fresh = EXP.cells(EXP.device_id) + EXP.other_device_records() if EXP.runs != "released" else []
    return released + fresh


rule collect_runs:
    input:
        records=run_record_files,
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


rule figure_throughput:
    params:
        models=list(EXP.models),
    input:
        runs="results/runs.parquet",
        style="workflow/figures.mplstyle",
    output:
        png=report("figures/throughput.png", caption="../report/throughput.rst", category="Figures"),
        pdf="figures/throughput.pdf",
    log:
        "results/logs/figure_throughput.log",
    script:
        "../scripts/figure_throughput.py"


rule figures_all:
    input:
        rules.tables.output,
        rules.figure_throughput.output,
        rules.fidelity_table.output if config.get("fidelity") else [],
    output:
        "figures/all",
    log:
        "results/logs/figures_all.log",
    script:
        "../scripts/figures_all.py"
