# Prompt-driven cells (edgemoe/prompt_cells.py): the engine's llama-cli on every prompt of a set,
# the study's own method beside llama-bench; one job per (device, engine, model, weights, quant,
# prompt set), in a block (prompt_cell, results/prompts/) or in a round (round_prompt_cell: a cell
# of the rounds like any other, chained and ordered by rounds.smk). The test name is
# cli-<set>-g<n_gen>.
#
# Needs common.smk (EXP, paths), cells.smk (cell_inputs, cell_id) and rounds.smk (ROUND_STEM,
# round_cell_input, round_fields).


def prompts_file():
    from edgemoe.prompts import prompts_path

    return prompts_path(config["experiment"]["prompts"]["set"])


PROMPT_PARAMS = dict(
    device=lambda w: EXP.devices[w.device],
    settings=config["experiment"]["prompts"],
    memory_regime=lambda w: (False, None, EXP.use_mmap),
    timeout_s=EXP.timeout_s,
    memory_limit_gb=config.get("cell_memory_limit_gb"),
    lock=paths.BENCH_LOCK,
)


rule prompt_cell:
    input:
        unpack(cell_inputs),
        prompts=lambda w: prompts_file(),
    output:
        records="results/prompts/{device}/{engine}/{model}/{tag}/{quant}/{test}.jsonl",
        raw=directory("results/prompts/{device}/{engine}/{model}/{tag}/{quant}/{test}.raw"),
    log:
        "results/prompts/{device}/{engine}/{model}/{tag}/{quant}/{test}.stderr.log",
    wildcard_constraints:
        test=r"cli-[-A-Za-z0-9_.]+",
    conda:
        "../../envs/pipeline.yaml"
    threads: all_cores
    resources:
        bench=1,
    params:
        **PROMPT_PARAMS,
        cell_id=lambda w: cell_id(w),
        rounds=None,
    script:
        "../scripts/prompt_cell.py"


rule round_prompt_cell:
    input:
        unpack(round_cell_input),
        prompts=lambda w: prompts_file(),
    output:
        records=f"{ROUND_STEM}.jsonl",
        raw=directory(f"{ROUND_STEM}.raw"),
    log:
        f"{ROUND_STEM}.stderr.log",
    wildcard_constraints:
        round=r"\d{3}",
        test=r"cli-[-A-Za-z0-9_.]+",
    conda:
        "../../envs/pipeline.yaml"
    threads: all_cores
    resources:
        bench=1,
    params:
        **PROMPT_PARAMS,
        cell_id=lambda w: cell_id(w, w.round),
        rounds=round_fields,
    script:
        "../scripts/prompt_cell.py"


ruleorder: round_prompt_cell > round_cell
