"""Where every file of a run lives: the one path layout that rules and package share.

Each function returns a path; called with Snakemake wildcard placeholders ("{model}") it returns
the rule's pattern, so a rule's output and the package's idea of that output cannot differ.

    results/engine/<engine>/{source.json, source/, build/<variant>/build-info.json}
    results/models/<model>/<weights tag>/<quant>.{gguf,json}
    results/bandwidth/<device>.json
    results/cells/<device>/<engine>/<model>/<weights tag>/<quant>/<test>.<ext>          block design
    results/rounds/<device>/<engine>/<design>/r<kkk>/<model>/<tag>/<quant>/<test>.<ext>  rounds design
    results/rounds/<device>/<engine>/<design>/r<kkk>/decision.json
    results/rounds/<device>/<design>-stop-<stopping>.done.json
    results/{profile,depth}/<device>/<engine>/<model>/<weights tag>/<quant>/...
    results/locality/<device>/<engine>/<model>/<weights tag>/<quant>/<decode>-<prompt set>.{parquet,json,log}
    results/runs.parquet, results/locality.parquet (expert selections: never in the run table), figures/
"""

from __future__ import annotations

import os

RESULTS = "results"
RUN_TABLE = f"{RESULTS}/runs.parquet"
# EDGEMOE_BENCH_LOCK: a node-local lock on a cluster (profiles/slurm), where results/ is shared by all nodes
BENCH_LOCK = os.environ.get("EDGEMOE_BENCH_LOCK") or f"{RESULTS}/.bench.lock"
LOCALITY_TABLE = f"{RESULTS}/locality.parquet"
UNION_SUMMARY = f"{RESULTS}/union.json"  # runs=union: the snapshots the run table was built from


def engine_source(engine: str) -> str:
    return f"{RESULTS}/engine/{engine}/source.json"


def build_dir(engine: str, variant: str) -> str:
    """variant: 'tools' (CPU build that quantizes) or a device id (the build its cells run)."""
    return f"{RESULTS}/engine/{engine}/build/{variant}"


def build_info(engine: str, variant: str) -> str:
    return f"{build_dir(engine, variant)}/build-info.json"


def model_file(model: str, tag: str, quant: str, ext: str = "gguf") -> str:
    """A model file (ext gguf) or its provenance sidecar (ext json)."""
    return f"{RESULTS}/models/{model}/{tag}/{quant}.{ext}"


def bandwidth(device: str) -> str:
    return f"{RESULTS}/bandwidth/{device}.json"


def cell_dir(kind: str, device: str, engine: str, model: str, tag: str, quant: str) -> str:
    """kind: cells (block design), profile, depth."""
    return f"{RESULTS}/{kind}/{device}/{engine}/{model}/{tag}/{quant}"


def locality_cell(device: str, engine: str, model: str, tag: str, quant: str, decode: str, prompt_set: str,
                  ext: str = "parquet") -> str:
    """An expert-locality run (edgemoe.locality_cells): its rows (parquet), summary (json), stderr (log)."""
    return f"{cell_dir('locality', device, engine, model, tag, quant)}/{decode}-{prompt_set}.{ext}"


def cell_stem(device: str, engine: str, model: str, tag: str, quant: str, test: str) -> str:
    """A block-design bench cell's files, less the extension (.jsonl records, .llama-bench.jsonl
    raw output, .stderr.log)."""
    return f"{cell_dir('cells', device, engine, model, tag, quant)}/{test}"


def cell_file(device: str, engine: str, model: str, tag: str, quant: str, test: str) -> str:
    return cell_stem(device, engine, model, tag, quant, test) + ".jsonl"


def round_tag(k: int | str) -> str:
    """Round k's folder name part: three digits (a wildcard placeholder passes through)."""
    return str(k) if str(k).startswith("{") else f"{int(k):03d}"


def round_dir(device: str, engine: str, design: str, k: int | str) -> str:
    return f"{RESULTS}/rounds/{device}/{engine}/{design}/r{round_tag(k)}"


def round_cell_stem(device: str, engine: str, design: str, k: int | str, model: str, tag: str, quant: str,
                    test: str) -> str:
    """A round cell's files, less the extension (as cell_stem)."""
    return f"{round_dir(device, engine, design, k)}/{model}/{tag}/{quant}/{test}"


def round_cell_file(device: str, engine: str, design: str, k: int | str, model: str, tag: str, quant: str,
                    test: str) -> str:
    return round_cell_stem(device, engine, design, k, model, tag, quant, test) + ".jsonl"


def round_decision(device: str, engine: str, design: str, k: int | str, ext: str = "json") -> str:
    """Round k's decision (json) and its log (log)."""
    return f"{round_dir(device, engine, design, k)}/decision.{ext}"


def rounds_done(device: str, design: str, stopping: str) -> str:
    """The file that closes a device's rounds, named after the stopping rule: Snakemake does not
    look behind a checkpoint for an output that exists, so a changed budget or target must give
    it a new name to reach the run table."""
    return f"{RESULTS}/rounds/{device}/{design}-stop-{stopping}.done.json"


def rounds_done_glob(device: str, design: str) -> str:
    return f"{RESULTS}/rounds/{device}/{design}-stop-*.done.json"


def figure(name: str, ext: str) -> str:
    """figures/<name>.<ext>: png and pdf drawn, csv the numbers drawn, rst the caption."""
    return f"figures/{name}.{ext}"
