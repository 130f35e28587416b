"""Depth cells: decode speed at a context depth, two ways that record the same fields.

- `llama-bench`: llama-bench -d D at engines that have it (llama.cpp from mid-2025): the decode
  test `-p 0 -n N -d D`, and the prompt that fills the cache as `-p D -n 0`, each `repetitions` times;
- `edgemoe-profile`: our program with profiling off (the study's engine, whose llama-bench has no
  -d), `repetitions` times: a D-token prompt, then N single-token decode steps timed from the first
  one on (no warm-up step: llama-bench times the first token after the depth too); its tg record is
  N / their summed time, llama-bench's statistic.

`auto` takes llama-bench where it has -d. A quantized KV cache (q8_0) turns flash attention on,
which these engines need for a quantized V cache. Both ways run under the bench lock and record
peak memory, failures and the KV cache size llama.cpp logs, like every other cell.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from edgemoe import llamabench
from edgemoe.cells import CellSpec, base_record, run_bench_cell
from edgemoe.profiling import PROFILER, run_profiler, run_records

METHODS = ("auto", "llama-bench", "edgemoe-profile")
CACHE_TYPES = ("f16", "q8_0", "q4_0")
# Bytes per cached value relative to f16: ggml blocks of 32 values (q8_0: 32 int8 + an f16 scale).
CACHE_SIZE_VS_F16 = {"f16": 1.0, "q8_0": 34 / 64, "q4_0": 18 / 64}


def test_name(depth: int, cache_type: str, method: str) -> str:
    """depth512 (f16, auto), depth512-q8_0, depth512-llama-bench: settings other than the defaults
    are in the name, so that variants are separate cells, rows and table lines."""
    return "-".join([f"depth{depth}"] + ([cache_type] if cache_type != "f16" else [])
                    + ([method] if method != "auto" else []))


def parse_test_name(name: str) -> tuple[int, str, str]:
    """(depth, cache type, method) of a test_name() name."""
    import re

    m = re.fullmatch(r"depth(\d+)(?:-(" + "|".join(CACHE_TYPES) + r"))?(?:-(" + "|".join(METHODS[1:]) + r"))?", name)
    if not m:
        raise ValueError(f"not a depth test name: {name!r}")
    return int(m.group(1)), m.group(2) or "f16", m.group(3) or "auto"


def cache_args(cache_type: str) -> tuple[str, ...]:
    if cache_type not in CACHE_TYPES:
        raise ValueError(f"depth.cache_type {cache_type!r}; allowed: {', '.join(CACHE_TYPES)}")
    if cache_type == "f16":
        return ()  # the engines' defaults: f16 cache, flash attention off (as in every other cell)
    return ("-ctk", cache_type, "-ctv", cache_type, "-fa", "1")


def resolve_method(method: str, llama_bench: str) -> str:
    if method not in METHODS:
        raise ValueError(f"depth.method {method!r}; allowed: {', '.join(METHODS)}")
    if method == "auto":
        return "llama-bench" if llama_bench and llamabench.supports_depth(llama_bench) else "edgemoe-profile"
    if method == "llama-bench" and not llamabench.supports_depth(llama_bench):
        raise ValueError(f"depth.method llama-bench: {llama_bench} has no -d (engines before mid-2025); "
                         "use edgemoe-profile or auto")
    return method


def run_depth_cell(spec: CellSpec, *, method: str, depth: int, cache_type: str, repetitions: int,
                   tools: dict[str, str], out_dir: Path, stderr_path: Path, lock_path: Path) -> list[dict[str, Any]]:
    """One depth cell's records. spec: n_gen, threads, model...; tools: program -> path; out_dir holds
    the raw outputs (llama-bench JSONL, the program's summaries)."""
    method = resolve_method(method, tools.get("llama-bench", ""))
    extra = cache_args(cache_type)
    common = {"n_depth": depth, "depth_method": method}
    if method == "edgemoe-profile":
        return _profile_depth_records(spec, depth, cache_type, repetitions, tools[PROFILER], extra, common,
                                      out_dir, stderr_path, lock_path)

    runs = [("tg", dataclasses.replace(spec, n_prompt=0, repetitions=repetitions, extra_args=(*extra, "-d", str(depth))))]
    if depth > 0:  # the prompt that fills the cache, from an empty cache
        runs.insert(0, ("pp", dataclasses.replace(spec, n_prompt=depth, n_gen=0, repetitions=repetitions,
                                                  extra_args=(*extra, "-d", "0"))))
    records = []
    for phase, s in runs:
        log = stderr_path.with_name(f"{stderr_path.name}.{phase}")
        rows = run_bench_cell(s, out_dir / f"llama-bench.{phase}.jsonl", log, lock_path)
        kv_bytes, n_ctx = llamabench.logged_kv_cache(log.read_text(errors="replace") if log.is_file() else "")
        for r in rows:
            r.update(common, kind="depth", n_ctx=n_ctx, kv_cache_bytes=kv_bytes)
            r.setdefault("type_k", cache_type)
            r.setdefault("type_v", cache_type)
            if phase == "pp":
                r["n_depth"] = 0
        records += rows
    with open(stderr_path, "w") as f:  # one log per cell, as for the other cells
        for phase, _ in runs:
            log = stderr_path.with_name(f"{stderr_path.name}.{phase}")
            if log.is_file():
                f.write(f"==== llama-bench {phase} ====\n{log.read_text(errors='replace')}")
                log.unlink()
    return records


def _profile_depth_records(spec, depth, cache_type, repetitions, exe, extra, common, out_dir, stderr_path, lock_path):
    """`repetitions` runs of the program, each a D-token prompt and then n_gen timed decode steps
    with no warm-up step in between: llama-bench -d also times the first token after the depth."""
    s = dataclasses.replace(spec, n_prompt=depth, repetitions=repetitions, extra_args=extra)
    records = []
    with open(stderr_path, "w") as log:  # one log per cell, as for the other cells
        for i in range(repetitions):
            run_log = stderr_path.with_name(f"{stderr_path.name}.{i}")
            run = run_profiler(s, exe, 0, False, out_dir / f"summary-{i}.json", None, run_log, lock_path)
            if run_log.is_file():
                log.write(f"==== edgemoe-profile run {i} ====\n{run_log.read_text(errors='replace')}")
                run_log.unlink()
            rows = run_records(base_record(s, run.result), run, spec.test, i)
            for r in rows:
                r.update(common)
                if r.get("phase") == "pp":
                    r["n_depth"] = 0
                r.setdefault("type_k", cache_type)
                r.setdefault("type_v", cache_type)
            if run.status != "ok":  # a failed run (oom, timeout) is the cell's one record, as for llama-bench
                return rows
            records += rows
    return records


def summary_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The cell's summary file: status, method and tok/s medians (what a reader checks first)."""
    import statistics

    tg = [r["tokens_per_s"] for r in records if r.get("phase") == "tg" and r.get("status") == "ok"]
    pp = [r["tokens_per_s"] for r in records if r.get("phase") == "pp" and r.get("status") == "ok"]
    return {"status": sorted({r["status"] for r in records}), "method": records[0].get("depth_method") if records else None,
            "decode_tok_per_s_median": statistics.median(tg) if tg else None,
            "prompt_tok_per_s_median": statistics.median(pp) if pp else None,
            "kv_cache_bytes": max((r.get("kv_cache_bytes") or 0 for r in records), default=None) or None,
            "n_ctx": max((r.get("n_ctx") or 0 for r in records), default=None) or None}


def write_summary(path: Path, records: list[dict[str, Any]]) -> None:
    from edgemoe.files import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(summary_of(records), indent=2))
