"""Cells that run our profiling binary (edgemoe-profile, added to llama.cpp by
patches/llama.cpp-f7cd13301/0001-node-timing.patch):

- profile cells: decode N tokens after a P-token prompt with per-node timing on (after a warm-up),
  classify every node (edgemoe.nodes) and record one row per decode step;
- depth cells (edgemoe.depth): the same binary with profiling off, at a context depth P (the study's
  engine has no llama-bench -d): decode tok/s at that depth, the prompt's prefill tok/s and the KV
  cache size llama.cpp reports, one record per run as llama-bench counts a repetition.

Both are measured like benchmark cells (edgemoe.cells: lock, exact peak RSS, failures as results)
and their rows carry the same provenance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemoe.cells import CellSpec, classify
from edgemoe.process import bench_lock, child_env, run_measured

PROFILER = "edgemoe-profile"


@dataclass
class ProfileRun:
    summary: dict[str, Any] | None
    status: str
    reason: str
    result: Any


def run_profiler(spec: CellSpec, exe: str, warmup: int, profile: bool, summary_path: Path, rows_path: Path | None,
                 stderr_path: Path, lock_path: Path) -> ProfileRun:
    cmd = [exe, "-m", spec.model_path, "-t", str(spec.threads), "-ngl", str(spec.n_gpu_layers),
           "--mmap", "1" if spec.use_mmap else "0", "-p", str(spec.n_prompt), "-n", str(spec.n_gen),
           "--warmup", str(warmup), "--profile", "1" if profile else "0", "--summary", str(summary_path), "-v",
           *spec.extra_args]
    if rows_path is not None:
        cmd += ["--rows", str(rows_path)]
    summary_path.unlink(missing_ok=True)
    with bench_lock(lock_path):
        result = run_measured(cmd, timeout_s=spec.timeout_s, env=child_env(spec.threads), stderr_path=stderr_path,
                              memory_limit_bytes=spec.memory_limit_bytes)
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() and result.exit_code == 0 else None
    status, reason = classify(result, [summary] if summary else [], 1)
    return ProfileRun(summary, status, reason, result)


def _common_fields(base: dict[str, Any], run: ProfileRun, kind: str, test: str) -> dict[str, Any]:
    r = run.result
    return {**base, "kind": kind, "test": test, "status": run.status, "status_reason": run.reason or None,
            "exit_code": r.exit_code, "signal": r.signal, "peak_rss_bytes": r.peak_rss_bytes,
            "sys_mem_used_peak_bytes": r.sys_mem_used_peak_bytes, "file_pmd_mapped_bytes": r.file_pmd_mapped_peak_bytes,
            "host_steal_s": r.steal_s, "host_other_cpu_s": r.other_cpu_s, "cell_cpu_s": r.cpu_s,
            "cell_start_utc": r.start_utc, "cell_end_utc": r.end_utc, "energy_status": "missing",
            "energy_reason": "not measured in profiling/depth cells"}


def _failure_record(common: dict[str, Any], run: ProfileRun, prefix: str) -> dict[str, Any]:
    return {**common, "run_id": f"{prefix}/failed", "stderr_tail": run.result.stderr_tail,
            "n_prompt": common["n_prompt"], "n_gen": common["n_gen"]}


def _add_context_fields(rows: list[dict[str, Any]], s: dict[str, Any]) -> list[dict[str, Any]]:
    for row in rows:
        row["type_k"], row["type_v"] = s.get("type_k", "f16"), s.get("type_v", "f16")  # programs before -ctk: f16
        row["flash_attn"] = str(bool(s.get("flash_attn")))
        row["n_ctx"] = int(s["n_ctx"]) if s.get("n_ctx") is not None else None
        row["kv_cache_bytes"] = int(float(s["kv_cache_mib"]) * 2**20) if s.get("kv_cache_mib") is not None else None
    return rows


def step_records(base: dict[str, Any], run: ProfileRun, kind: str, test: str) -> list[dict[str, Any]]:
    """Profile cells: one record per measured decode step (tg)."""
    common = _common_fields(base, run, kind, test)
    prefix = f"{base['cell_id']}@{run.result.start_utc}"
    if run.status != "ok":
        return [_failure_record(common, run, prefix)]
    s = run.summary
    rows = [{**common, "run_id": f"{prefix}/tg/{i}", "phase": "tg", "repetition": i, "n_prompt": 0,
             "n_gen": 1, "n_depth": int(s["n_prompt"]), "time_ns": int(ns), "tokens": 1, "tokens_per_s": 1e9 / ns}
            for i, ns in enumerate(s["decode_wall_ns"])]
    return _add_context_fields(rows, s)


def run_records(base: dict[str, Any], run: ProfileRun, test: str, repetition: int) -> list[dict[str, Any]]:
    """Depth cells: one run of the program as llama-bench counts a repetition: the prompt (pp) and
    the n_gen decode steps right after it (tg: n_gen / their summed time, as llama-bench -d times
    the tokens after the cached depth). The per-step times stay in the program's summary file."""
    common = _common_fields(base, run, "depth", test)
    prefix = f"{base['cell_id']}@{run.result.start_utc}"
    if run.status != "ok":
        return [_failure_record(common, run, prefix)]
    s = run.summary
    rows = []
    n_prompt = int(s["n_prompt"])
    if n_prompt > 0 and s.get("prompt_ms"):
        ns = int(float(s["prompt_ms"]) * 1e6)
        rows.append({**common, "run_id": f"{prefix}/pp/{repetition}", "phase": "pp", "repetition": repetition,
                     "n_prompt": n_prompt, "n_gen": 0, "time_ns": ns, "tokens": n_prompt, "tokens_per_s": n_prompt / (ns / 1e9)})
    steps = [int(x) for x in s["decode_wall_ns"]]
    ns = sum(steps)
    rows.append({**common, "run_id": f"{prefix}/tg/{repetition}", "phase": "tg", "repetition": repetition, "n_prompt": 0,
                 "n_gen": len(steps), "n_depth": n_prompt, "time_ns": ns, "tokens": len(steps),
                 "tokens_per_s": len(steps) / (ns / 1e9)})
    return _add_context_fields(rows, s)


def add_node_classes(records: list[dict[str, Any]], nodes, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per decode step: ns per node class and coverage, into that step's record.
    `nodes`: the classified rows (edgemoe.nodes.read_rows)."""
    from edgemoe.nodes import CLASSES, class_ns

    per_step = class_ns(nodes)
    steps = sorted(per_step.index)
    tg = [r for r in records if r.get("phase") == "tg"]
    if len(steps) != len(tg):
        raise ValueError(f"{len(steps)} profiled steps but {len(tg)} decode steps in the summary")
    coverage = summary.get("coverage") or [None] * len(tg)
    for r, step, cov in zip(tg, steps, coverage):
        for c in CLASSES:
            r[f"node_ns_{c}"] = int(per_step.loc[step, c])
        r["node_coverage"] = cov
        r["cuda_graphs_off"] = summary.get("cuda_graphs_off")
    return records


def layer_table(nodes):
    """Per-layer detail of classified rows (edgemoe.nodes.layer_detail: ns per layer and class,
    median over steps, and each layer's routing share of its MoE block)."""
    from edgemoe.nodes import layer_detail

    return layer_detail(nodes, stat="median")
