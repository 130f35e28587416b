"""Run one benchmark cell: llama-bench as a child process measured from outside
(edgemoe.process), its output parsed into one record per repetition with full provenance.

- Power is sampled where the device has a counter; llama-bench prints one JSON line per test as
  soon as that test ends, and the arrival stamp of each line locates the generation window.
- A crash, an out-of-memory kill or a timeout is a result: recorded with status, exit code or
  signal, peak memory and the stderr tail.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemoe import llamabench
from edgemoe.cuda import cell_state as cuda_graphs_state
from edgemoe.process import ProcessResult, bench_lock, bytes_in_window, child_env, run_measured

# stderr lines that mean "did not fit" rather than "broke"
OOM_MARKERS = ("failed to allocate", "bad_alloc", "cannot allocate memory", "out of memory",
               "unable to allocate", "failed to mmap", "mmap failed", "insufficient memory", "failed to map segment")
IDLE_BASELINE_S = 2.0


def classify(result: ProcessResult, rows: list[dict[str, Any]], expected_tests: int) -> tuple[str, str]:
    """(status, reason): ok | timeout | oom | crash."""
    if result.timed_out:
        return "timeout", f"killed after the cell's timeout ({result.wall_s:.0f} s)"
    text = result.stderr_tail.lower()
    if result.exit_code == 0 and len(rows) == expected_tests:
        return "ok", ""
    if any(m in text for m in OOM_MARKERS) or result.signal == signal.SIGKILL:
        return "oom", _last_line_with(result.stderr_tail, OOM_MARKERS) or f"killed by signal {result.signal}"
    if result.signal:
        return "crash", f"killed by signal {signal.Signals(result.signal).name}"
    if result.exit_code != 0:
        return "crash", f"exit code {result.exit_code}: {_last_line(result.stderr_tail)}"
    return "crash", f"llama-bench printed {len(rows)} of {expected_tests} results"


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _last_line_with(text: str, markers: tuple[str, ...]) -> str:
    for ln in reversed(text.splitlines()):
        if any(m in ln.lower() for m in markers):
            return ln.strip()[:300]
    return ""


# A cell is flagged when others took more than this share of one CPU, or the hypervisor stole more
# than this share of the wall time (the harness itself uses about 1% of a CPU).
BUSY_OTHER_SHARE = 0.10
STEAL_SHARE = 0.02


def cell_warnings(samples: list, load_before: float, power_mode: str | None,
                  result: ProcessResult | None = None) -> list[str]:
    """Reasons to distrust a cell: a busy host (before or during), steal, throttling, the wrong
    power mode."""
    from edgemoe.device_tools import jetson_power_mode
    from edgemoe.thermal import throttle_summary

    out = []
    cpus = os.cpu_count() or 1
    if load_before > cpus + 1:  # the previous cell alone leaves about its thread count
        out.append(f"host busy before the cell (1-min load average {load_before:.1f} on {cpus} CPUs)")
    if result is not None and result.wall_s > 0:
        if result.other_cpu_s is not None and result.other_cpu_s > BUSY_OTHER_SHARE * result.wall_s:
            out.append(f"host busy during the cell (other processes used {result.other_cpu_s:.1f} CPU-s "
                       f"in {result.wall_s:.1f} s)")
        if result.steal_s is not None and result.steal_s > STEAL_SHARE * result.wall_s:
            out.append(f"hypervisor steal {result.steal_s:.1f} CPU-s in {result.wall_s:.1f} s")
    t = throttle_summary(samples)
    if t.get("thermal_pressure_worst") not in (None, "Nominal"):
        out.append(f"thermal pressure {t['thermal_pressure_worst']}")
    if t.get("nvml_throttle_reasons_or", 0) & ~0x1 & ~0x2:  # beyond idle / application clocks
        out.append(f"NVML throttle reasons 0x{t['nvml_throttle_reasons_or']:x}")
    if power_mode:
        mode = jetson_power_mode()
        if mode and power_mode not in str(mode.get("name")):
            out.append(f"power mode is {mode.get('name')!r}, the profile expects {power_mode!r}")
    return out


@dataclass
class CellSpec:
    """Everything one benchmark cell needs, resolved by the workflow."""

    cell_id: str
    device_id: str
    backend: str
    bench_exe: str
    model_path: str
    model_info: dict[str, Any]  # the model file's sidecar (models rule)
    build_info: dict[str, Any]  # the build's provenance (engine rule)
    test: str
    n_prompt: int
    n_gen: int
    repetitions: int
    threads: int
    n_gpu_layers: int
    use_mmap: bool
    timeout_s: float
    memory_ceiling_bytes: int
    energy_sampler: str = "none"
    memory_limit_bytes: int | None = None
    device_read_gbs: float | None = None
    cooldown_s: float = 0.0
    power_mode: str | None = None
    extra_args: tuple[str, ...] = ()  # more llama-bench flags (depth cells: -d, -ctk, -ctv, -fa)
    # Emulated memory (edgemoe.memcg): in_cgroup runs the child in a memory cgroup of
    # memory_emulated_bytes (None: no limit, the host's own memory) after evicting the model's pages.
    in_cgroup: bool = False
    memory_emulated_bytes: int | None = None

    @property
    def settle_repetitions(self) -> int:
        """Untimed leading repetitions (recorded as warm-up): a cell whose model pages were evicted
        would time the refill of the page cache in its first repetition, not the steady state."""
        return 1 if self.in_cgroup else 0


def cell_spec(*, cell_id: str, device_id: str, device: Any, exe: str, gguf: str, model_info_path: str,
              build_info_path: str, test: str, n_prompt: int, n_gen: int, repetitions: int, use_mmap: bool,
              timeout_s: float, memory_limit_gb: float | None = None, bandwidth_path: str | None = None,
              in_cgroup: bool = False, memory_emulated_bytes: int | None = None) -> CellSpec:
    """A CellSpec from the workflow's files and a device profile (edgemoe.config.Device)."""
    import json

    from edgemoe.scratch import stage

    bandwidth = json.loads(Path(bandwidth_path).read_text())["read_gbs"] if bandwidth_path else None
    return CellSpec(
        cell_id=cell_id, device_id=device_id, backend=device.backend, bench_exe=exe,
        model_path=stage(gguf),  # a node-local copy where EDGEMOE_MODEL_SCRATCH says (edgemoe/scratch.py)
        model_info=json.loads(Path(model_info_path).read_text()),
        build_info=json.loads(Path(build_info_path).read_text()), test=test, n_prompt=n_prompt, n_gen=n_gen,
        repetitions=repetitions, threads=device.threads, n_gpu_layers=device.n_gpu_layers, use_mmap=use_mmap,
        timeout_s=timeout_s, memory_ceiling_bytes=device.memory_ceiling_bytes, energy_sampler=device.energy_sampler,
        memory_limit_bytes=int(memory_limit_gb * 1e9) if memory_limit_gb else None, device_read_gbs=bandwidth,
        cooldown_s=device.cooldown_s, power_mode=device.power_mode, in_cgroup=in_cgroup,
        memory_emulated_bytes=memory_emulated_bytes)


def _tool_versions(build_info: dict[str, Any]) -> str:
    import json
    import platform

    from edgemoe import __version__

    return json.dumps({"python": platform.python_version(), "edgemoe": __version__,
                       "cmake": build_info.get("cmake"), "llama_bench_sha256":
                       build_info.get("binaries", {}).get("llama-bench", {}).get("sha256")}, sort_keys=True)


def base_record(spec: CellSpec, result: ProcessResult) -> dict[str, Any]:
    """The fields every record of a cell shares: provenance, settings, host, memory."""
    import json

    from edgemoe.bandwidth import weight_bytes_per_token
    from edgemoe.host import host_facts

    b, m = spec.build_info, spec.model_info
    base: dict[str, Any] = {
        "cell_id": spec.cell_id, "kind": "bench", "exit_code": result.exit_code, "signal": result.signal,
        "device": spec.device_id, "backend": spec.backend,
        "engine": b["engine"], "engine_commit": b["commit"], "engine_source_sha256": b["source"].get("sha256"),
        "patches": json.dumps(b["patches"]), "patches_sha256": b.get("patches_sha256"),
        "build_flags": json.dumps(b["cmake_flags"]), "c_compiler": b["c_compiler"], "cxx_compiler": b["cxx_compiler"],
        "model": m["model"], "model_family": m["family"], "weights_source": m["weights_source"],
        "is_twin": m["weights_source"] == "twin", "twin_seed": m.get("twin_seed"),
        "hf_repo": m.get("hf_repo"), "hf_revision": m.get("hf_revision"),
        "params_total": m["params_total"], "params_active": m["params_active"],
        **{k: m.get(k) for k in ("derived_from", "arch", "ffn_experts", "ffn_experts_used", "ffn_width")},
        "kv_bytes_per_token": m.get("kv_bytes_per_token"), "quant": m["quant"], "gguf_sha256": m["gguf_sha256"], "gguf_bytes": m["gguf_bytes"],
        "test": spec.test, "n_prompt": spec.n_prompt, "n_gen": spec.n_gen, "n_threads": spec.threads,
        "n_gpu_layers": spec.n_gpu_layers, "use_mmap": spec.use_mmap, "n_repetitions": spec.repetitions,
        "cuda_graphs": cuda_graphs_state(spec.backend, b, m["family"] == "moe", os.environ),
        "peak_rss_bytes": result.peak_rss_bytes, "sys_mem_used_peak_bytes": result.sys_mem_used_peak_bytes,
        "file_pmd_mapped_bytes": result.file_pmd_mapped_peak_bytes,
        "host_steal_s": result.steal_s, "host_other_cpu_s": result.other_cpu_s, "cell_cpu_s": result.cpu_s,
        "memory_ceiling_bytes": spec.memory_ceiling_bytes, "memory_limit_bytes": spec.memory_limit_bytes,
        "major_faults": result.major_faults, "storage_read_bytes": result.storage_read_bytes,
        "device_read_gbs": spec.device_read_gbs, "weight_bytes_per_token": weight_bytes_per_token(spec.model_path),
        "energy_sampler": spec.energy_sampler,
        "cell_start_utc": result.start_utc, "cell_end_utc": result.end_utc,
        "tool_versions": _tool_versions(b),
        **host_facts(),
    }
    base.pop("host_name_hash", None)
    return base


@contextmanager
def emulated_memory(spec: CellSpec) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(cgroup or None, the fields it adds to the records). With in_cgroup: the model's pages are
    evicted and checked (mincore) first, then the child runs in a cell cgroup of the ceiling."""
    from edgemoe import memcg

    if not spec.in_cgroup:
        yield None, {}
        return
    support = memcg.probe()
    fields: dict[str, Any] = {"memory_emulated_bytes": spec.memory_emulated_bytes, "cgroup_version": support.version,
                              "model_resident_bytes_before": memcg.evict_and_check(spec.model_path)}
    with memcg.CellCgroup(support, spec.memory_emulated_bytes) as cg:
        yield cg, fields


def ceiling_kill_reason(spec: CellSpec, regime: dict[str, Any]) -> str:
    limit = spec.memory_emulated_bytes
    peak = regime.get("cgroup_peak_bytes")
    return (f"killed by the emulated memory ceiling ({limit / 1e9:.2f} GB): {regime['cgroup_oom_kills']} OOM "
            f"kill(s) in the cell's cgroup, peak {peak / 1e9:.2f} GB" if limit and peak else
            f"killed in the cell's memory cgroup ({regime['cgroup_oom_kills']} OOM kill(s))")


def run_bench_cell(spec: CellSpec, raw_path: Path, stderr_path: Path, lock_path: Path) -> list[dict[str, Any]]:
    """Run the cell under the bench lock; return its records (one per repetition, or one failure)."""
    import json

    from edgemoe.energy import energy_joules, idle_baseline_watts
    from edgemoe.samplers import make_sampler
    from edgemoe.telemetry import NullSampler
    from edgemoe.thermal import peak_temperature

    cmd = llamabench.command(spec.bench_exe, spec.model_path, spec.n_prompt, spec.n_gen,
                             spec.repetitions + spec.settle_repetitions, spec.threads, spec.n_gpu_layers, spec.use_mmap, extra=spec.extra_args)
    expected = (spec.n_prompt > 0) + (spec.n_gen > 0)
    with bench_lock(lock_path):
        time.sleep(spec.cooldown_s)  # let the device cool down after the previous cell
        load_before = os.getloadavg()[0]
        sampler = make_sampler(spec.energy_sampler)
        sampler.start()
        if not isinstance(sampler, NullSampler):
            time.sleep(IDLE_BASELINE_S)  # the idle baseline window, just before the cell
        idle_end_ns = time.monotonic_ns()
        with emulated_memory(spec) as (cgroup, regime):
            result = run_measured(cmd, timeout_s=spec.timeout_s, env=child_env(spec.threads),
                                  stderr_path=stderr_path, memory_limit_bytes=spec.memory_limit_bytes,
                                  result_lines=expected, cgroup=cgroup, trace_io=spec.in_cgroup)
            regime.update(cgroup.stats() if cgroup else {})
        samples = sampler.stop()
        load_after = os.getloadavg()[0]
    raw_text = "".join(line for _, line in result.stdout_lines)
    raw_path.write_text(raw_text)
    try:
        rows = llamabench.parse(raw_text)
    except ValueError:
        rows = []
    status, reason = classify(result, rows, expected)
    if status != "ok" and regime.get("cgroup_oom_kills"):
        status, reason = "oom", ceiling_kill_reason(spec, regime)

    base = base_record(spec, result)
    base.update(regime)
    base.update(status=status, status_reason=reason or None, load_avg_before=load_before, load_avg_after=load_after,
                raw_output=str(raw_path))
    base["warnings"] = "; ".join(cell_warnings(samples, load_before, spec.power_mode, result) + sampler.warnings) or None
    run_prefix = f"{spec.cell_id}@{result.start_utc}"  # unique per execution: reruns and releases merge
    temp, temp_source = peak_temperature(samples)
    base["temp_peak_c"], base["temp_source"] = temp, temp_source
    if status != "ok":
        return [{**base, "run_id": f"{run_prefix}/failed", "n_prompt": spec.n_prompt, "n_gen": spec.n_gen,
                 "stderr_tail": result.stderr_tail, "energy_status": "missing",
                 "energy_reason": f"cell {status}"}]

    idle_w = idle_baseline_watts(samples, None, idle_end_ns)
    records = []
    arrivals = {}  # phase -> monotonic ns at which llama-bench printed its line
    for t_ns, line in result.stdout_lines:
        if line.strip().startswith("{"):
            arrivals[llamabench.test_name(json.loads(line))] = t_ns
    for row in rows:
        if int(row["n_threads"]) != spec.threads:
            raise RuntimeError(f"{spec.cell_id}: llama-bench ran {row['n_threads']} threads, configured {spec.threads}")
        phase = "tg" if int(row["n_gen"]) > 0 else "pp"
        tokens = int(row["n_gen"]) if phase == "tg" else int(row["n_prompt"])
        reps = llamabench.repetitions(row)
        energy = {"energy_status": "missing", "energy_reason": None,
                  "energy_j_per_token_raw": None, "energy_j_per_token_net": None, "idle_watts": idle_w}
        # The repetitions are the last sum(samples) ns before llama-bench printed the line.
        end = arrivals.get(llamabench.test_name(row))
        timed = reps[spec.settle_repetitions:]
        if phase == "tg":
            e = energy_joules(samples, end - sum(timed), end) if end and not isinstance(sampler, NullSampler) else None
            if isinstance(sampler, NullSampler):
                energy["energy_reason"] = sampler.reason
            elif e is None or e.missing:
                energy["energy_reason"] = sampler.energy_reason(e.reason if e else "generation window not located")
            else:
                n_tok = tokens * len(timed)
                energy.update(energy_status="ok", energy_j_per_token_raw=e.joules / n_tok,
                              energy_j_per_token_net=(e.joules - idle_w * e.window_s) / n_tok if idle_w is not None else None)
        else:
            energy["energy_reason"] = "energy is reported for generation only"
        window = bytes_in_window(result.io_trace, end - sum(timed), end) if end and result.io_trace else None
        storage = {"storage_read_bytes_window": window,
                   "storage_read_bytes_per_token": window / (tokens * len(timed)) if window is not None else None}
        for i, ns in enumerate(reps):
            settle = {"warmup": True} if i < spec.settle_repetitions else {}
            records.append({
                **base, **energy, **storage, **settle, "run_id": f"{run_prefix}/{phase}/{i}", "phase": phase,
                "n_prompt": int(row["n_prompt"]), "n_gen": int(row["n_gen"]),
                "n_batch": row.get("n_batch"), "n_ubatch": row.get("n_ubatch"),
                "type_k": row.get("type_k"), "type_v": row.get("type_v"), "flash_attn": llamabench.flash_attn_name(row.get("flash_attn")),
                "n_depth": row.get("n_depth", 0),
                "repetition": i, "time_ns": ns, "tokens": tokens, "tokens_per_s": tokens / (ns / 1e9),
                "model_type": row.get("model_type"), "model_n_params": row.get("model_n_params"),
                "test_time_utc": row.get("test_time"), "llamabench_build_commit": row.get("build_commit"),
            })
    return records
