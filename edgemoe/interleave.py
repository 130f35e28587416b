"""Interleaved decode cells: every model of a round decoding in one process, block by block.

Why: on a shared VM decode speed drifts by 5-10% from one minute to the next, and a cell of model A
and a cell of model B are a minute apart, so a round's A/B ratio carries that drift. The
engine-side program `edgemoe-interleave` (patches/llama.cpp-f7cd13301/0002-interleave.patch) loads
every model of the round once, each with its own context, and runs each repetition of a decode
test (tg<n_gen>, as llama-bench: random tokens after a BOS, one warm-up token first) in blocks of
`interleave` tokens: block b of every model, then block b+1 of every model in the reverse order
(ABBA), and so on. A model's repetition is the sum of its blocks, so every model's tg64 is spread
over the same seconds as the others', and their ratio is paired at the scale of a block.

A test opts in with `interleave: <block tokens>` (rounds design, decode-only tests; the engine
must build edgemoe-interleave). Records are the usual bench records, one per model and
repetition, with `program: edgemoe-interleave`, the block size, and the process's peak
memory as `process_peak_rss_bytes` (all models together: a per-model peak comes from the other
cells). The whole round cell fails together, one failed record per model, with the reason.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from edgemoe.process import bench_lock, child_env, run_measured

PROGRAM = "edgemoe-interleave"
GROUP = "all-models"  # the model wildcard of an interleaved round cell: one job for every model


class InterleaveError(ValueError):
    """An interleaved test the configuration cannot run."""


def check_settings(tests: list[dict[str, Any]], *, rounds_enabled: bool, regimes_on: bool, engine_id: str,
                   targets: list[str]) -> None:
    """Before any job: interleaved tests decode only, in rounds, with the program built."""
    for i, t in enumerate(tests):
        block = t.get("interleave")
        if block is None:
            continue
        where = f"experiment.tests[{i}] ({t['name']})"
        if t["n_prompt"] != 0 or t["n_gen"] == 0:
            raise InterleaveError(f"{where}: interleave is for decode-only tests (n_prompt 0, n_gen > 0); "
                                  "measure prefill in a test of its own")
        if t["n_gen"] % block:
            raise InterleaveError(f"{where}: n_gen {t['n_gen']} is not a multiple of interleave {block}")
        if not rounds_enabled:
            raise InterleaveError(f"{where}: interleave needs the rounds design (experiment.rounds.enabled: true)")
        if regimes_on:
            raise InterleaveError(f"{where}: interleave runs every model in one process, which an emulated "
                                  "memory ceiling per cell cannot hold (experiment.regimes): drop one of them")
        if PROGRAM not in targets:
            raise InterleaveError(f"{where}: interleave needs {PROGRAM} in engines.{engine_id}.targets (it comes "
                                  "with patches/llama.cpp-f7cd13301/0002-interleave.patch)")


def check_fits(model_bytes: dict[str, int], ceiling_bytes: int, device_id: str, test: str) -> None:
    """All the round's models are mapped at once: their files must fit in the device's memory."""
    total = sum(model_bytes.values())
    if total > 0.9 * ceiling_bytes:
        sizes = ", ".join(f"{m} {b / 1e9:.2f} GB" for m, b in model_bytes.items())
        raise InterleaveError(f"experiment.tests ({test}): interleave maps every model at once, {total / 1e9:.1f} GB "
                              f"({sizes}), more than 90% of device {device_id}'s {ceiling_bytes / 1e9:.1f} GB: "
                              "drop interleave from the test or models from experiment.models")


def command(exe: str, models: list[str], n_gen: int, block: int, repetitions: int, order: list[int], threads: int,
            n_gpu_layers: int, use_mmap: bool, seed: int = 1234) -> list[str]:
    """Every setting that changes a measurement, explicitly."""
    return [exe, *[a for m in models for a in ("-m", m)], "-n", str(n_gen), "--block", str(block),
            "-r", str(repetitions), "--warmup", "0", "--order", ",".join(map(str, order)), "-t", str(threads),
            "-ngl", str(n_gpu_layers), "-mmp", "1" if use_mmap else "0", "--seed", str(seed)]


def parse(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
    """(model lines, block lines, done line or None) of the program's stdout; a line that is not
    JSON raises ValueError naming its number."""
    models, blocks, done = [], [], None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip().startswith("{"):
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{PROGRAM} output line {n} is not JSON ({e.msg}): {line[:200]!r}") from None
        event = row.get("event")
        if event == "model":
            models.append(row)
        elif event == "block":
            blocks.append(row)
        elif event == "done":
            done = row
    return models, blocks, done


def expected_lines(n_models: int, n_gen: int, block: int, repetitions: int) -> int:
    return n_models + n_models * repetitions * (n_gen // block) + 1


def incomplete_reason(n_models: int, blocks: list[dict[str, Any]], done: dict[str, Any] | None,
                      n_gen: int, block: int, repetitions: int) -> str | None:
    """Why an exit-0 output is not a complete measurement, or None."""
    want = n_models * repetitions * (n_gen // block)
    if len(blocks) != want:
        return f"{PROGRAM} printed {len(blocks)} of {want} blocks"
    if done is None:
        return f"{PROGRAM} did not print its closing line"
    return None


def run_interleaved_cell(specs: list, block: int, order: list[int], raw_path: Path, stderr_path: Path,
                         lock_path: Path, seed: int = 1234) -> list[dict[str, Any]]:
    """Run one interleaved round cell under the bench lock (specs: one edgemoe.cells.CellSpec per
    model, the same test and exe); return one record per model and repetition, or one failure each."""
    from edgemoe.cells import base_record, cell_warnings, classify
    from edgemoe.samplers import make_sampler
    from edgemoe.thermal import peak_temperature

    first = specs[0]
    cmd = command(first.bench_exe, [s.model_path for s in specs], first.n_gen, block, first.repetitions, order,
                  first.threads, first.n_gpu_layers, first.use_mmap, seed)
    with bench_lock(lock_path):
        time.sleep(first.cooldown_s)
        load_before = os.getloadavg()[0]
        sampler = make_sampler(first.energy_sampler)
        sampler.start()
        result = run_measured(cmd, timeout_s=first.timeout_s, env=child_env(first.threads), stderr_path=stderr_path,
                              memory_limit_bytes=first.memory_limit_bytes,
                              result_lines=expected_lines(len(specs), first.n_gen, block, first.repetitions))
        samples = sampler.stop()
        load_after = os.getloadavg()[0]
    raw_text = "".join(line for _, line in result.stdout_lines)
    raw_path.write_text(raw_text)
    try:
        model_lines, blocks, done = parse(raw_text)
        broken = None
    except ValueError as e:
        model_lines, blocks, done, broken = [], [], None, str(e)
    status, reason = classify(result, [None], 1)  # ok only if it exited 0
    if status == "ok":
        reason = broken or incomplete_reason(len(specs), blocks, done, first.n_gen, block, first.repetitions)
        status = "crash" if reason else "ok"
    temp, temp_source = peak_temperature(samples)
    shared = {"status": status, "status_reason": reason or None, "load_avg_before": load_before,
              "load_avg_after": load_after, "raw_output": str(raw_path), "temp_peak_c": temp,
              "temp_source": temp_source, "program": PROGRAM, "interleave_block": block,
              "interleave_models": len(specs), "process_peak_rss_bytes": result.peak_rss_bytes,
              "peak_rss_bytes": None, "file_pmd_mapped_bytes": None,
              "warnings": "; ".join(cell_warnings(samples, load_before, first.power_mode, result) + sampler.warnings)
              or None}
    records = []
    for i, spec in enumerate(specs):
        base = {**base_record(spec, result), **shared, "interleave_position": order.index(i)}
        run_prefix = f"{spec.cell_id}@{result.start_utc}"  # unique per execution, as a bench cell's
        if status != "ok":
            records.append({**base, "run_id": f"{run_prefix}/failed",
                            "stderr_tail": result.stderr_tail, "energy_status": "missing",
                            "energy_reason": f"cell {status}"})
            continue
        info = next((m for m in model_lines if m["index"] == i), {})
        for rep in range(spec.repetitions):
            mine = [b for b in blocks if b["model"] == i and b["repetition"] == rep and not b["warmup"]]
            ns = sum(b["t_end_ns"] - b["t_start_ns"] for b in mine)
            records.append({
                **base, **_energy(samples, sampler, mine, spec.n_gen),
                "run_id": f"{run_prefix}/tg/{rep}", "phase": "tg",
                "n_batch": 2048, "n_ubatch": 512, "type_k": "f16", "type_v": "f16", "flash_attn": "False",
                "n_depth": 0, "repetition": rep, "time_ns": ns, "tokens": spec.n_gen,
                "tokens_per_s": spec.n_gen / (ns / 1e9), "model_type": info.get("model_type"),
                "model_n_params": info.get("model_n_params"), "test_time_utc": result.start_utc,
                "llamabench_build_commit": info.get("build_commit"),
                "interleave_span_s": (max(b["t_end_ns"] for b in mine) - min(b["t_start_ns"] for b in mine)) / 1e9,
            })
    return records


def _energy(samples: list, sampler: Any, blocks: list[dict[str, Any]], n_tokens: int) -> dict[str, Any]:
    """Energy per token of one model's repetition: the sum over its blocks' windows (the other
    models' blocks in between are not its energy)."""
    from edgemoe.energy import energy_joules
    from edgemoe.telemetry import NullSampler

    out: dict[str, Any] = {"energy_status": "missing", "energy_reason": None, "energy_j_per_token_raw": None,
                           "energy_j_per_token_net": None, "idle_watts": None}
    if isinstance(sampler, NullSampler):
        out["energy_reason"] = sampler.reason
        return out
    parts = [energy_joules(samples, b["t_start_ns"], b["t_end_ns"]) for b in blocks]
    bad = next((e for e in parts if e is None or e.missing), None)
    if bad is not None or not parts:
        out["energy_reason"] = sampler.energy_reason(f"a turn's window: {bad.reason}" if bad is not None else "no turns")
        return out
    out.update(energy_status="ok", energy_j_per_token_raw=sum(e.joules for e in parts) / n_tokens)
    return out
