"""Pre-flight, before any job runs: is there room on disk for what this run writes, will each
cell's model fit the device's memory, and are the model files the user gave whole?

Every size the run writes is known in advance: a model's files from its architecture and the
quant types (llama-quantize's per-tensor choices, `tensor_type`), the engine's source and builds
roughly. Jobs that are already done write nothing; a job that reruns first frees the outputs it
replaces. Model jobs hold one F16 temporary each while they run (edgemoe.models), so the peak is
everything kept plus the largest temporaries that can coexist. A run that would fill the disk
stops here with the folder, the need and what is free, instead of hours later inside a job.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from edgemoe.architectures import ArchSpec, TensorSpec

GB = 1e9

# ggml type -> (weights per block, bytes per block)
GGML_TYPES = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q5_0": (32, 22), "Q5_1": (32, 24),
              "Q8_0": (32, 34), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210)}
# llama-quantize (llama-quant.cpp): a file type's default tensor type, and the output matrix's
_QUANTS = {"Q4_K_M": ("Q4_K", "Q6_K"), "Q4_K_S": ("Q4_K", "Q6_K"), "Q5_K_M": ("Q5_K", "Q6_K"),
           "Q6_K": ("Q6_K", "Q6_K"), "Q8_0": ("Q8_0", "Q8_0"), "Q4_0": ("Q4_0", "Q6_K"), "F16": ("F16", "F16"),
           "BF16": ("BF16", "BF16")}
# ... and the type it falls back to where a row is not a whole number of blocks
_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
# What is not a model, rounded up from llama.cpp f7cd13301 (sdist 67 MB + tree 83 MB; a CPU build of
# the three targets 28 MB); a GPU backend build compiles its kernels (a guess, generous).
ENGINE_SOURCE_BYTES = int(0.3 * GB)
ENGINE_BUILD_BYTES = {"cpu": int(0.2 * GB), "cuda": int(2.5 * GB), "metal": int(0.3 * GB), "vulkan": int(1.0 * GB)}
RESULTS_MARGIN_BYTES = int(0.1 * GB)  # records, raw outputs, logs, the run table, figures
MODEL_JOBS = ("twin_model", "converted_model")


def human(nbytes: float) -> str:
    return f"{nbytes / GB:.1f} GB" if nbytes >= GB else f"{nbytes / 1e6:.0f} MB"


class PreflightError(RuntimeError):
    """The run would not fit: the message says where, how much, and how to reduce it."""


# ---- model sizes ------------------------------------------------------------------------------
def _more_bits(layer: int, n_layer: int) -> bool:
    """llama-quantize's use_more_bits: the first and last eighth of the layers and every third between."""
    return layer < n_layer // 8 or layer >= 7 * n_layer // 8 or (layer - n_layer // 8) % 3 == 2


def tensor_type(spec: ArchSpec, t: TensorSpec, quant: str) -> str:
    """The ggml type llama-quantize gives a tensor of a twin or converted model (F16 source)."""
    if t.dtype == "F32":  # norms, biases, the router and rope factors are never quantized
        return "F32"
    base, output = _QUANTS[quant]
    layer = int(t.name.split(".")[1]) if t.name.startswith("blk.") else -1
    more = layer >= 0 and _more_bits(layer, spec.n_layer)
    typ = base
    if t.name == "output.weight" or (spec.tied_embeddings and t.name == "token_embd.weight"):
        typ = output
    elif t.kind == "attn_v":
        if quant in ("Q4_K_M", "Q5_K_M") and more:
            typ = "Q6_K"
        elif quant == "Q4_K_S" and layer < 4:
            typ = "Q5_K"
        if spec.n_expert == 8 and base not in ("F16", "BF16"):
            typ = "Q8_0"
    elif t.kind == "attn_k" and spec.n_expert == 8 and base not in ("F16", "BF16"):
        typ = "Q8_0"
    elif t.kind == "ffn_down" and quant in ("Q4_K_M", "Q5_K_M") and more:
        typ = "Q6_K"
    row = t.shape[-1]
    if row % GGML_TYPES[typ][0]:
        typ = _FALLBACK.get(typ, "F16")
        if row % GGML_TYPES[typ][0]:
            typ = "F16"
    return typ


def _metadata_bytes(spec: ArchSpec) -> int:
    """Header: tokens, types, scores and merges (llama-bpe's 128k tokens take 7.8 MB), names."""
    return 64 * spec.n_vocab + len(spec.tensors()) * 96 + (1 << 20)


def gguf_bytes(spec: ArchSpec, quant: str) -> int:
    """Size of a model's GGUF at a quant type (F16: the F16 file the twin writer or convert script writes)."""
    total = _metadata_bytes(spec)
    for t in spec.tensors():
        block, nbytes = GGML_TYPES[tensor_type(spec, t, quant)]
        total += -(-t.n_elements // block) * nbytes + 31  # + alignment padding
    return total


# ---- disk -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """A planned Snakemake job, as far as the pre-flight needs it."""
    rule: str
    wildcards: dict[str, str]
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Need:
    what: str
    folder: str  # where it is written
    kept: int  # bytes on disk after the job (net of what it replaces)
    temporary: int = 0  # bytes on disk only while it runs


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        return path.stat().st_size
    except OSError:
        return 0


def _model_need(exp, job: Job) -> Need:
    from edgemoe.twins_quantized import DIRECT_QUANTS

    m = exp.models[job.wildcards["model"]]
    quants = {q: gguf_bytes(m.spec, q) for q in exp.quants}
    kept = sum(quants.values())
    if m.weights == "local" and Path(m.local_path).suffix == ".gguf":
        temporary = max(quants.values())  # the user's F16 is read in place; a quant's temp beside its copy
    elif m.weights == "twin" and set(quants) <= DIRECT_QUANTS:
        temporary = 0  # written quantized directly (edgemoe.twins_quantized): no F16 is made
    else:
        temporary = gguf_bytes(m.spec, "F16")
    desc = ", ".join(f"{q} {human(b)}" for q, b in quants.items())
    return Need(f"{m.id} ({m.weights}): {desc}" + (f"; F16 temporary {human(temporary)}" if temporary else ""),
                f"results/models/{m.id}", kept, temporary)


def _fidelity_need(real: str, made: dict[str, int]) -> Need:
    """The real file's copy, its twin's F16 temporary, the twin's quantized temp and final copy."""
    from edgemoe.modelcheck import ModelFileError, read_gguf_header

    size = made.get(real) or _size(Path(real))
    try:
        h = read_gguf_header(real, keep=lambda k: False)
        f16 = sum((2 if t.type_id else 4) * math.prod(t.ne) for t in h.tensors)
    except ModelFileError:
        f16 = 4 * size  # not there yet, or checked (and refused) elsewhere: assume a 4-bit file
    return Need(f"fidelity: a copy of {real} and its twin", "results/fidelity", 2 * size, f16 + size)


def disk_needs(exp, jobs: Iterable[Job], exists: Callable[[str], int] = lambda p: _size(Path(p))) -> list[Need]:
    """What each planned job adds to the disk. `exists(path)` gives the bytes a path holds now
    (0 when absent): a job's existing outputs are removed before it reruns, so they are freed."""
    from edgemoe.models import stale_temporaries

    jobs = list(jobs)
    needs: list[Need] = []
    made: dict[str, int] = {}  # model files this run writes, for fidelity on a file made here
    for job in jobs:
        if job.rule in MODEL_JOBS:
            n = _model_need(exp, job)
            freed = sum(exists(p) for p in job.outputs)
            freed += sum(_size(p) for p in stale_temporaries(Path(job.outputs[0]).parent)) if job.outputs else 0
            needs.append(Need(n.what, n.folder, max(0, n.kept - freed), n.temporary))
            model = job.wildcards["model"]
            made.update({exp.model_file(model, q): gguf_bytes(exp.models[model].spec, q) for q in exp.quants})
        elif job.rule == "hf_download":
            m = exp.models[job.wildcards["model"]]
            needs.append(Need(f"{m.id}: Hugging Face checkpoint (bf16)", f"results/hf/{m.id}",
                              2 * m.total_params))
        elif job.rule == "engine_source":
            needs.append(Need(f"engine {job.wildcards['engine']}: source", f"results/engine/{job.wildcards['engine']}",
                              ENGINE_SOURCE_BYTES))
        elif job.rule == "engine_build":
            variant = job.wildcards["variant"]
            backend = "cpu" if variant == "tools" else exp.devices[variant].backend
            needs.append(Need(f"engine {job.wildcards['engine']}: {variant} build",
                              f"results/engine/{job.wildcards['engine']}", ENGINE_BUILD_BYTES.get(backend, GB)))
    for job in jobs:
        if job.rule == "fidelity":
            needs.append(_fidelity_need(exp.cfg["fidelity"]["real"], made))
    if jobs:
        needs.append(Need("records, logs, run table, figures", "results", RESULTS_MARGIN_BYTES))
    return needs


def peak_temporaries(needs: list[Need], parallel: int = 1) -> int:
    """The `parallel` largest temporaries: the worst case is that those jobs run last, together."""
    return sum(sorted((n.temporary for n in needs), reverse=True)[:max(1, parallel)])


def peak_bytes(needs: list[Need], parallel: int = 1) -> int:
    return sum(n.kept for n in needs) + peak_temporaries(needs, parallel)


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


@dataclass
class DiskCheck:
    folder: str  # the folder whose file system is checked (first existing one where the run writes)
    need: int
    free: int
    temporaries: int  # the part of `need` that is gone when the run ends
    needs: list[Need] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.free >= self.need


def check_disk(needs: list[Need], parallel: int = 1,
               free_bytes: Callable[[Path], int] = lambda p: shutil.disk_usage(p).free) -> list[DiskCheck]:
    """Peak need against free space, per file system the run writes to (results/, or a part of
    it that is a symlink to another disk), each named by the folder its parts share (made or not yet)."""
    groups: dict[int, list[Need]] = {}
    for n in needs:
        groups.setdefault(os.stat(_existing_ancestor(Path(n.folder))).st_dev, []).append(n)
    checks = []
    for group in groups.values():
        folder = Path(os.path.commonpath([Path(n.folder).absolute() for n in group]))
        checks.append(DiskCheck(str(folder), peak_bytes(group, parallel), free_bytes(_existing_ancestor(folder)),
                                peak_temporaries(group, parallel), group))
    return checks


def disk_message(c: DiskCheck) -> str:
    if c.ok:
        parts = f" ({human(c.need - c.temporaries)} kept, {human(c.temporaries)} of temporaries)" \
            if c.temporaries else ""
        return (f"pre-flight: disk: this run needs up to {human(c.need)} at peak in {c.folder}{parts}; "
                f"{human(c.free)} free there")
    biggest = sorted(c.needs, key=lambda n: n.kept + n.temporary, reverse=True)[:4]
    lines = [f"pre-flight: not enough free disk for this run in {c.folder}: it needs up to {human(c.need)} "
             f"at peak, {human(c.free)} are free. The largest parts:"]
    lines += [f"  - {n.what}" if n.temporary else f"  - {n.what}: {human(n.kept)}" for n in biggest]
    lines.append("To reduce it: free space there, or fewer models or quants (experiment.models, "
                 "experiment.quants), or put the results on a file system with room (mv results /big/disk/results "
                 "&& ln -s /big/disk/results results); then run the same command again.")
    return "\n".join(lines)


# ---- memory -----------------------------------------------------------------------------------
def cell_contexts(exp) -> int:
    """The largest context (tokens in the KV cache) any of the run's cells asks for."""
    ctx = [t.n_prompt + t.n_gen for t in exp.tests.values()]
    prof = exp.cfg.get("profiling") or {}
    if prof.get("enabled"):
        ctx.append(prof.get("n_prompt", 0) + prof.get("n_gen", 0))
    depth = exp.cfg.get("depth") or {}
    if depth.get("enabled"):
        ctx += [d + depth.get("n_gen", 0) for d in exp.depths()]
    return max(ctx)


def unfit_cells(exp) -> dict[tuple[str, str], str]:
    """(model, quant) -> why its cells cannot fit the device's memory ceiling: the weights and the
    KV cache alone exceed it (compute buffers and the OS come on top, so this is a lower bound).
    Released data runs no cell, on no device: nothing to check."""
    dev = exp.device
    if dev is None:
        return {}
    ctx, out = cell_contexts(exp), {}
    for m in exp.models.values():
        kv = m.spec.kv_bytes_per_token() * ctx
        for q in exp.quants:
            weights = gguf_bytes(m.spec, q)
            if weights + kv > dev.memory_ceiling_bytes:
                out[(m.id, q)] = (f"{m.id} {q} needs at least {(weights + kv) / GB:.2f} GB (weights "
                                  f"{weights / GB:.2f} GB + KV cache {kv / GB:.2f} GB at {ctx} tokens), more than "
                                  f"device {dev.id}'s memory ceiling of {dev.memory_ceiling_bytes / GB:.2f} GB")
    return out


# ---- model files given by the user --------------------------------------------------------------
def check_given_model_files(exp, planned_outputs: set[str]) -> list[str]:
    """Check the files the pipeline reads but did not write, before any job: weights=local paths
    and fidelity.real (unless this run makes it). Raises ModelFileError; returns what was checked."""
    from edgemoe.modelcheck import check_checkpoint, check_gguf

    def tree(engine_id: str) -> Path | None:  # the engine's types are known once its source is fetched
        src = Path(f"results/engine/{engine_id}/source")
        return src if src.is_dir() else None

    checked = []
    for m in exp.models.values():
        if m.weights == "local":
            path = Path(m.local_path)
            if path.suffix == ".gguf":
                check_gguf(path, tree(exp.models_engine_id))
            else:
                check_checkpoint(path)
            checked.append(str(path))
    real = (exp.cfg.get("fidelity") or {}).get("real")
    if real and real not in planned_outputs and Path(real).is_file():
        check_gguf(real, tree(exp.engine_id))
        checked.append(real)
    return checked


# ---- the whole check ----------------------------------------------------------------------------
def run_preflight(exp, jobs: list[Job], cores: int, settings: dict[str, Any] | None = None) -> list[str]:
    """Lines to print at the start of a run (in the working directory); raises PreflightError
    (disk), ModelFileError (a model file the user gave) or EngineAxisError (an engine)."""
    from edgemoe.engine_axis import check_experiment

    settings = {"disk": "stop", "memory": "warn", **(settings or {})}
    # an engine that cannot be fetched, or does not know a model's architecture: before any job
    lines = check_experiment(exp, {j.wildcards["engine"] for j in jobs if j.rule == "engine_source"})
    checked = check_given_model_files(exp, {o for j in jobs for o in j.outputs})
    if checked:
        lines.append(f"pre-flight: model files whole: {', '.join(checked)}")
    if settings["disk"] != "off":
        # model jobs take min(cores, 4) threads, so cores // 4 of them can run side by side
        parallel = max(1, (cores or 1) // 4)
        for c in check_disk(disk_needs(exp, jobs), parallel):
            if not c.ok and settings["disk"] == "stop":
                raise PreflightError(disk_message(c))
            lines.append(disk_message(c))
    if settings["memory"] != "off":
        lines += [f"pre-flight: memory: warning: {why}: its cells will likely run out of memory (recorded as oom)"
                  for why in unfit_cells(exp).values()]
    return lines
