"""The run table: one row per repetition of every cell (and one per failed cell), with provenance.

`FIELDS` is the single definition of the schema: name, Arrow type, whether it is required, and what
it means. data/README.md documents it field by field (a test keeps the two in step). Loading
validates every row and names the file and line (JSONL) or row (Parquet) of the first problem.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from edgemoe.files import atomic_path
from edgemoe.nodes import CLASSES as NODE_CLASSES

STATUSES = ("ok", "oom", "crash", "timeout")

S, I, F, B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
# (name, type, required, description)
FIELDS: list[tuple[str, pa.DataType, bool, str]] = [
    ("run_id", S, True, "unique id: cell_id@cell start (UTC)/phase/repetition"),
    ("cell_id", S, True, "device/engine/model/weights/quant/test[/r<round>]: the Snakemake cell that produced the row"),
    ("kind", S, True, "bench (llama-bench), profile (per-node decode timing), depth (decode at a context depth) or prompt (llama-cli on a prompt, edgemoe/prompt_cells.py)"),
    ("status", S, True, "ok, oom, crash or timeout; a failed cell has one row and no timing"),
    ("status_reason", S, False, "why the cell failed (stderr line, signal, timeout)"),
    ("exit_code", I, False, "llama-bench's exit code (null when killed by a signal)"),
    ("signal", I, False, "signal that ended llama-bench, if any"),
    ("device", S, True, "device profile id (config devices:)"),
    ("backend", S, True, "cpu, cuda, metal or vulkan"),
    ("engine", S, True, "engine id (config engines:)"),
    ("engine_commit", S, True, "llama.cpp commit of the source, recorded by us (not llama-bench's field)"),
    ("engine_source_sha256", S, False, "sha256 of the source archive (pypi-sdist engines)"),
    ("patches", S, True, "JSON list of applied patches with their sha256"),
    ("patches_sha256", S, False, "sha256 over the applied patches' hashes ('' when none)"),
    ("build_flags", S, True, "JSON list of the cmake flags of the build that ran the cell"),
    ("c_compiler", S, True, "C compiler version line"),
    ("cxx_compiler", S, True, "C++ compiler version line"),
    ("model", S, True, "model id (config models:)"),
    ("model_family", S, True, "moe or dense"),
    ("weights_source", S, True, "twin (shape twin, random weights), hf or local"),
    ("is_twin", B, True, "true when the numbers come from a shape twin, not trained weights"),
    ("twin_seed", I, False, "seed of the shape twin"),
    ("hf_repo", S, False, "Hugging Face repo of real weights"),
    ("hf_revision", S, False, "resolved Hugging Face commit of real weights"),
    ("params_total", I, True, "total parameters, computed from the architecture spec"),
    ("params_active", I, True, "parameters used per token (MoE: non-expert + used experts' share)"),
    ("derived_from", S, False, "counterfactual twins (edgemoe/counterfactuals.py): the MoE model it derives from"),
    ("arch", S, False, "llama.cpp architecture of the model file"),
    ("ffn_experts", I, False, "experts per layer (0: a dense FFN)"),
    ("ffn_experts_used", I, False, "experts used per token (0: a dense FFN)"),
    ("ffn_width", I, False, "FFN width: per expert for an MoE, the dense FFN's otherwise"),
    ("quant", S, True, "quantization type (llama-quantize name)"),
    ("gguf_sha256", S, True, "sha256 of the benchmarked GGUF file"),
    ("gguf_bytes", I, True, "size of the benchmarked GGUF file in bytes"),
    ("weight_bytes_per_token", I, False, "weight bytes a decode step reads (used experts only; no embedding lookup)"),
    ("model_type", S, False, "llama-bench's model_type (how llama.cpp names the model)"),
    ("model_n_params", I, False, "llama-bench's model_n_params"),
    ("test", S, True, "test name from config (experiment.tests)"),
    ("phase", S, False, "pp (prompt processing) or tg (generation); null for a failed cell"),
    ("n_prompt", I, True, "prompt tokens of this row's phase (0 for tg)"),
    ("n_gen", I, True, "generated tokens of this row's phase (0 for pp)"),
    ("n_threads", I, True, "threads llama.cpp used (configured, checked against llama-bench's report)"),
    ("n_gpu_layers", I, True, "layers offloaded to the GPU"),
    ("cuda_graphs", S, False, "CUDA graphs in the cell: n/a (not CUDA), on, off (not built), off (GGML_CUDA_DISABLE_GRAPHS), disabled by the engine for MoE (edgemoe/cuda.py)"),
    ("use_mmap", B, True, "weights loaded through mmap (true) or read into memory (false)"),
    ("n_batch", I, False, "logical batch size"),
    ("n_ubatch", I, False, "physical batch size"),
    ("type_k", S, False, "KV cache type of K"),
    ("type_v", S, False, "KV cache type of V"),
    ("flash_attn", S, False, "flash attention setting as llama-bench reports it"),
    ("n_depth", I, False, "context depth: tokens already in the KV cache when the measured tokens start (0 for prompts)"),
    ("depth_method", S, False, "how a depth cell measured: llama-bench (-d) or edgemoe-profile (profiling off)"),
    ("kv_cache_bytes", I, False, "KV cache size llama.cpp reports for the cell's context"),
    ("n_ctx", I, False, "context size of a profile/depth cell (the KV cache holds n_ctx tokens)"),
    ("kv_bytes_per_token", I, False, "f16 KV cache bytes per token computed from the architecture"),
    ("repetition", I, False, "0-based repetition index (decode step for profile cells; run of the program for depth cells); null for a failed cell"),
    ("n_repetitions", I, True, "repetitions asked for"),
    ("round", I, False, "round index (0-based) of a rounds-design cell; null for a block-design cell"),
    ("round_position", I, False, "position of the cell in its round's shuffled order (0 = first)"),
    ("round_seed", I, False, "seed of the rounds' order (experiment.rounds.seed); the order is drawn from (seed, round)"),
    ("round_design", S, False, "the rounds design's id (design-<hash>: cells, order, seed, repetitions, warm-up)"),
    ("warmup", B, False, "true for a warm-up round's rows: recorded, never used by an estimate"),
    ("time_ns", I, False, "wall time of this repetition in ns (llama-bench samples_ns)"),
    ("tokens", I, False, "tokens processed in this repetition"),
    ("tokens_per_s", F, False, "tokens / time"),
    ("peak_rss_bytes", I, False, "peak resident memory of the llama-bench process (os.wait4 rusage)"),
    ("sys_mem_used_peak_bytes", I, False, "peak system-wide memory in use during the cell (sampled every 0.5 s)"),
    ("file_pmd_mapped_bytes", I, False, "the model file mapped with 2 MiB pages (FilePmdMapped), read once after the last timed repetition with the process stopped"),
    ("memory_ceiling_bytes", I, True, "the device's memory ceiling from its profile"),
    ("memory_limit_bytes", I, False, "address-space limit imposed on the cell, if any"),
    ("memory_emulated_bytes", I, False, "emulated memory ceiling of the cell (edgemoe/memcg.py: a memory cgroup around llama-bench, page cache counted); null: the host's memory"),
    ("cgroup_version", I, False, "cells in a memory cgroup: cgroup v1 or v2"),
    ("cgroup_peak_bytes", I, False, "cells in a memory cgroup: its peak usage (anonymous memory and page cache)"),
    ("cgroup_oom_kills", I, False, "cells in a memory cgroup: OOM kills inside it"),
    ("cgroup_limit_hits", I, False, "cells in a memory cgroup: times usage hit the limit (v1 failcnt, v2 events max)"),
    ("model_resident_bytes_before", I, False, "cells in a memory cgroup: bytes of the model file still in the page cache after eviction (mincore), just before the cell"),
    ("major_faults", I, False, "page faults of the benchmark process that waited for storage (rusage)"),
    ("storage_read_bytes", I, False, "bytes read from storage for the benchmark process over the whole cell (load included; /proc io accounting)"),
    ("storage_read_bytes_window", I, False, "cells in a memory cgroup: bytes read from storage during this phase's timed repetitions"),
    ("storage_read_bytes_per_token", F, False, "storage_read_bytes_window / tokens of the timed repetitions"),
    ("device_read_gbs", F, False, "the device's measured memory read bandwidth (GB/s, STREAM-like kernel)"),
    ("energy_status", S, True, "ok or missing"),
    ("energy_reason", S, False, "why energy is missing"),
    ("energy_sampler", S, True, "sampler used (none, rapl, nvml, tegrastats, powermetrics)"),
    ("energy_j_per_token_raw", F, False, "joules per generated token over the generation window"),
    ("energy_j_per_token_net", F, False, "the same minus the idle baseline measured before the cell"),
    ("idle_watts", F, False, "idle power baseline measured just before the cell"),
    ("temp_peak_c", F, False, "peak device temperature during the cell"),
    ("temp_source", S, False, "sensor of temp_peak_c, or why there is none"),
    ("warnings", S, False, "reasons to distrust the cell: busy host, throttling, wrong power mode"),
    ("load_avg_before", F, False, "host 1-min load average before the cell"),
    ("load_avg_after", F, False, "host 1-min load average after the cell"),
    ("host_steal_s", F, False, "CPU time the hypervisor stole from this VM during the cell (/proc/stat steal, all CPUs)"),
    ("host_other_cpu_s", F, False, "CPU time of everything but the benchmark process during the cell (/proc/stat busy minus the child's rusage)"),
    ("cell_cpu_s", F, False, "CPU time of the benchmark process (user + system, rusage)"),
    ("cell_start_utc", S, True, "cell start (ISO 8601, UTC)"),
    ("cell_end_utc", S, True, "cell end (ISO 8601, UTC)"),
    ("test_time_utc", S, False, "start of this phase as llama-bench reports it"),
    ("host_cpu", S, True, "CPU model"),
    ("host_logical_cpus", I, True, "logical CPUs of the host"),
    ("host_memory_bytes", I, True, "physical memory of the host"),
    ("host_os", S, True, "operating system"),
    ("host_kernel", S, True, "kernel release"),
    ("host_machine", S, True, "machine architecture"),
    ("tool_versions", S, True, "JSON: python, edgemoe, cmake and other tool versions"),
    ("llamabench_build_commit", S, False, "llama-bench's own build_commit field (unreliable for vendored trees)"),
    ("cuda_graphs_off", B, False, "profile cells on CUDA: CUDA graphs were off while timing nodes"),
    ("node_coverage", F, False, "profile cells: sum of node times / wall time of the decode step"),
    *[(f"node_ns_{c}", I, False, f"profile cells: ns of the decode step in {c} nodes (edgemoe/nodes.py classes)")
      for c in NODE_CLASSES],
    ("prompt_set", S, False, "prompt cells: the prompt set (data/prompts/<set>.jsonl)"),
    ("prompt_id", S, False, "prompt cells: the prompt's id in its set"),
    ("prompt_kind", S, False, "prompt cells: what the prompt asks for"),
    ("prompt_sha256", S, False, "prompt cells: sha256 of the prompt text as sent"),
    ("sampler", S, False, "prompt cells: how tokens were chosen (greedy: temperature 0)"),
    ("sampler_seed", I, False, "prompt cells: the sampler's seed"),
    ("program", S, False, "the engine program that ran, where not llama-bench: llama-cli (prompt cells), edgemoe-interleave (interleaved decode)"),
    ("interleave_block", I, False, "interleaved decode (edgemoe/interleave.py): tokens per turn; every model of the round decoded in one process, turn by turn"),
    ("interleave_models", I, False, "interleaved decode: models sharing the process"),
    ("interleave_position", I, False, "interleaved decode: this model's place in the process's turn order (reversed every other turn)"),
    ("interleave_span_s", F, False, "interleaved decode: seconds from this repetition's first turn's start to its last turn's end"),
    ("process_peak_rss_bytes", I, False, "interleaved decode: peak RSS of the process holding every model (peak_rss_bytes is then null)"),
    ("program_args", S, False, "prompt cells: JSON list of its arguments"),
    ("ttft_ms", F, False, "prompt cells: time to first token, from the prompt's forward pass to the first generated token's (llama-cli's timestamped eval lines)"),
    ("load_ms", F, False, "prompt cells: the footer's load time"),
    ("total_ms", F, False, "prompt cells: the footer's total time"),
    ("sampling_ms", F, False, "prompt cells: the footer's sampling time"),
    ("token_gaps_ms", S, False, "prompt cells: JSON list of gaps between consecutive generated tokens' forward passes (inter-token latency, llama-cli's timestamped eval lines)"),
    ("token_passes", I, False, "prompt cells: generated tokens' forward passes seen in the log (n_gen - 1 when complete)"),
    ("itl_p50_ms", F, False, "prompt cells: median inter-token latency of the run"),
    ("itl_p90_ms", F, False, "prompt cells: 90th percentile inter-token latency of the run"),
    ("itl_p99_ms", F, False, "prompt cells: 99th percentile inter-token latency of the run"),
    ("stderr_tail", S, False, "last lines of llama-bench's stderr (failed cells)"),
    ("raw_output", S, False, "path of the raw llama-bench output kept beside the record"),
]
SCHEMA = pa.schema([pa.field(n, t, nullable=not req) for n, t, req, _ in FIELDS])
REQUIRED = [n for n, _, req, _ in FIELDS if req]
_TYPES = {n: t for n, t, _, _ in FIELDS}
POSITIVE_WHEN_OK = ("time_ns", "tokens", "tokens_per_s")
NON_NEGATIVE = ("peak_rss_bytes", "sys_mem_used_peak_bytes", "file_pmd_mapped_bytes", "gguf_bytes",
                "params_total", "params_active", "n_threads", "n_repetitions", "repetition")


class RecordError(ValueError):
    """A bad record, named by file and line or row."""


def _type_ok(value: Any, t: pa.DataType) -> bool:
    if t == I:
        return isinstance(value, int) and not isinstance(value, bool)
    if t == F:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == B:
        return isinstance(value, bool)
    return isinstance(value, str)


def validate_row(row: dict[str, Any], where: str) -> None:
    unknown = set(row) - set(_TYPES)
    if unknown:
        raise RecordError(f"{where}: unknown fields {sorted(unknown)}")
    for n in REQUIRED:
        if row.get(n) is None:
            raise RecordError(f"{where}: required field {n!r} is missing")
    for n, v in row.items():
        if v is not None and not _type_ok(v, _TYPES[n]):
            raise RecordError(f"{where}: field {n!r} should be {_TYPES[n]}, got {type(v).__name__} {v!r}")
    if row["status"] not in STATUSES:
        raise RecordError(f"{where}: status {row['status']!r} is not one of {STATUSES}")
    if row["status"] == "ok":
        for n in POSITIVE_WHEN_OK:
            if row.get(n) is None or row[n] <= 0:
                raise RecordError(f"{where}: {n} must be > 0 for an ok repetition, got {row.get(n)!r}")
    for n in NON_NEGATIVE:
        if row.get(n) is not None and row[n] < 0:
            raise RecordError(f"{where}: {n} must not be negative, got {row[n]!r}")


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Records of one JSONL(.gz) file, each validated; errors name the file and line."""
    path = Path(path)
    rows = []
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise RecordError(f"{path}:{lineno}: not valid JSON ({e.msg}); truncated or corrupt file?") from None
                if not isinstance(row, dict):
                    raise RecordError(f"{path}:{lineno}: a record must be a JSON object")
                validate_row(row, f"{path}:{lineno}")
                rows.append(row)
    except (EOFError, OSError) as e:  # gzip truncation surfaces here
        raise RecordError(f"{path}: cannot be read to the end ({e}); truncated or corrupt file?") from None
    return rows


def merge(sources: Iterable[tuple[str, list[dict[str, Any]]]]) -> pa.Table:
    """Rows of several sources -> one table; a duplicate run_id names both places."""
    seen: dict[str, str] = {}
    rows = []
    for where, src_rows in sources:
        for i, r in enumerate(src_rows, 1):
            rid = r["run_id"]
            if rid in seen:
                raise RecordError(f"{where} record {i}: duplicate run_id {rid!r} (first seen in {seen[rid]})")
            seen[rid] = f"{where} record {i}"
            rows.append(r)
    cols = {n: [r.get(n) for r in rows] for n in SCHEMA.names}
    return pa.Table.from_pydict(cols, schema=SCHEMA)


def write_parquet(table: pa.Table, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_parquet(path: Path | str) -> pa.Table:
    """A run table from Parquet, checked row by row against the schema."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise RecordError(f"{path}: not a readable Parquet file ({e})") from None
    missing = set(REQUIRED) - set(table.column_names)
    if missing:
        raise RecordError(f"{path}: required columns missing: {sorted(missing)}")
    seen: dict[str, int] = {}
    for i, row in enumerate(table.to_pylist()):
        row = {k: v for k, v in row.items() if k in _TYPES}
        validate_row(row, f"{path} row {i}")
        if row["run_id"] in seen:
            raise RecordError(f"{path} row {i}: duplicate run_id {row['run_id']!r} (first at row {seen[row['run_id']]})")
        seen[row["run_id"]] = i
    for name in SCHEMA.names:  # optional fields newer than the file: null, as a record without them
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(len(table), SCHEMA.field(name).type))
    return table.select(SCHEMA.names).cast(SCHEMA)
