"""CUDA facts of a device and a build: the GPU's architecture for the build (from nvidia-smi, where
a profile says `-DCMAKE_CUDA_ARCHITECTURES=auto`), and the CUDA graphs state of each cell.

CUDA graphs (llama.cpp's GGML_CUDA_GRAPHS, on by default in a llama.cpp build) replay a decode
step's kernels as one graph; the engine turns them off at run time for GGML_CUDA_DISABLE_GRAPHS,
and some engines for any graph holding MUL_MAT_ID (the MoE expert matmul): the study's f7cd13301
says "This node type is not supported by CUDA graph capture", so its MoE decode runs without
graphs while its dense decode runs with them. Which engines do is read from the engine's own
source at build time (`build_facts`), and each cell records the state (`cell_state`).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

AUTO_ARCH = "-DCMAKE_CUDA_ARCHITECTURES=auto"
STATES = ("n/a", "on", "off (not built)", "off (GGML_CUDA_DISABLE_GRAPHS)", "disabled by the engine for MoE")


class CudaError(ValueError):
    """The GPU cannot be asked what it is (the message names what was looked for)."""


def arch_from_nvidia_smi(run=subprocess.run) -> str:
    """The GPUs' compute capabilities as CMake wants them ("9.0" -> "90"; several: "86;90")."""
    cmd = ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"]
    try:
        p = run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CudaError(f"{' '.join(cmd)} could not run ({type(e).__name__}: {e})") from None
    caps = sorted({line.strip().replace(".", "") for line in p.stdout.splitlines() if line.strip()})
    if p.returncode != 0 or not caps or not all(re.fullmatch(r"\d{2,3}", c) for c in caps):
        raise CudaError(f"{' '.join(cmd)} said nothing usable (exit {p.returncode}: "
                        f"{(p.stdout + p.stderr).strip()[:200]!r})")
    return ";".join(caps)


def resolve_flags(flags: list[str], device_id: str, run=subprocess.run) -> list[str]:
    """A device's cmake flags with `-DCMAKE_CUDA_ARCHITECTURES=auto` replaced by the GPU's own."""
    if AUTO_ARCH not in flags:
        return list(flags)
    try:
        arch = arch_from_nvidia_smi(run)
    except CudaError as e:
        raise CudaError(f"devices.{device_id}.cmake_flags: {AUTO_ARCH} asks the GPU for its architecture, but {e}; "
                        "set -DCMAKE_CUDA_ARCHITECTURES=<compute capability, e.g. 87 or 90> instead") from None
    return [f"-DCMAKE_CUDA_ARCHITECTURES={arch}" if f == AUTO_ARCH else f for f in flags]


def build_facts(src: Path, cmake_cache: Mapping[str, str]) -> dict[str, Any]:
    """What a CUDA build does with graphs: built with them, and whether the engine's source turns
    them off for any graph with MUL_MAT_ID (None where the build has no CUDA backend)."""
    if cmake_cache.get("GGML_CUDA", "OFF").upper() not in ("ON", "TRUE", "1"):
        return {"cuda_graphs_built": None, "cuda_graphs_moe_disabled": None}
    built = cmake_cache.get("GGML_CUDA_GRAPHS", "ON").upper() in ("ON", "TRUE", "1")
    cu = Path(src) / "ggml/src/ggml-cuda/ggml-cuda.cu"
    text = cu.read_text(errors="replace") if cu.is_file() else ""
    # "if (node->op == GGML_OP_MUL_MAT_ID) { use_cuda_graph = false;" with nothing else in the condition
    moe_off = bool(re.search(r"if\s*\(\s*node->op\s*==\s*GGML_OP_MUL_MAT_ID\s*\)\s*\{\s*use_cuda_graph\s*=\s*false",
                             text))
    return {"cuda_graphs_built": built, "cuda_graphs_moe_disabled": moe_off}


def cell_state(backend: str, build_info: Mapping[str, Any], is_moe: bool, env: Mapping[str, str]) -> str:
    """One of STATES for a cell of this backend, build, model and environment."""
    if backend != "cuda":
        return "n/a"
    if not build_info.get("cuda_graphs_built"):
        return "off (not built)"
    if "GGML_CUDA_DISABLE_GRAPHS" in env:
        return "off (GGML_CUDA_DISABLE_GRAPHS)"
    if is_moe and build_info.get("cuda_graphs_moe_disabled"):
        return "disabled by the engine for MoE"
    return "on"


__all__ = ["AUTO_ARCH", "STATES", "CudaError", "arch_from_nvidia_smi", "build_facts", "cell_state", "resolve_flags"]
