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
        multiext("figures/tables/throughput", ".csv", ".md", ".tex"),
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
        multiext("figures/throughput", ".png", ".pdf"),
    log:
        "results/logs/figure_throughput.log",
    script:
        "../scripts/figure_throughput.py"


rule figures_all:
    input:
        rules.tables.output,
        rules.figure_throughput.output,
    output:
        "figures/all",
    log:
        "results/logs/figures_all.log",
    script:
        "../scripts/figures_all.py"
