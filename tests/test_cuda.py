"""CUDA facts without a GPU (edgemoe/cuda.py): the architecture from nvidia-smi's answer, the
refusal where it cannot be asked, and the CUDA graphs state a cell records."""
import subprocess

import pytest

from edgemoe import cuda


def _smi(stdout, code=0):
    def run(cmd, **kw):
        assert cmd[0] == "nvidia-smi" and "--query-gpu=compute_cap" in cmd
        return subprocess.CompletedProcess(cmd, code, stdout, "")
    return run


def test_the_architecture_comes_from_the_gpus_compute_capability():
    assert cuda.arch_from_nvidia_smi(_smi("9.0\n")) == "90"
    assert cuda.arch_from_nvidia_smi(_smi("8.6\n9.0\n8.6\n")) == "86;90"
    flags = ["-DGGML_CUDA=ON", cuda.AUTO_ARCH]
    assert cuda.resolve_flags(flags, "cuda-dgpu", _smi("8.7\n")) == ["-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=87"]
    assert cuda.resolve_flags(["-DCMAKE_CUDA_ARCHITECTURES=90"], "x", _smi("")) == ["-DCMAKE_CUDA_ARCHITECTURES=90"]


def test_no_answer_from_nvidia_smi_names_the_key_and_the_fix():
    def missing(cmd, **kw):
        raise FileNotFoundError(2, "No such file or directory", "nvidia-smi")
    for run in (missing, _smi("", 9), _smi("No devices were found\n")):
        with pytest.raises(cuda.CudaError, match=r"devices.cuda-dgpu.cmake_flags: .*nvidia-smi --query-gpu=compute_cap"
                                                 r".*set -DCMAKE_CUDA_ARCHITECTURES="):
            cuda.resolve_flags([cuda.AUTO_ARCH], "cuda-dgpu", run)


F7_SNIPPET = """
        for (int i = 0; i < cgraph->n_nodes; i++) {
            ggml_tensor * node = cgraph->nodes[i];
            if (node->op == GGML_OP_MUL_MAT_ID) {
                use_cuda_graph = false; // This node type is not supported by CUDA graph capture
            }
"""
NEWER_SNIPPET = """
            if (node->op == GGML_OP_MUL_MAT_ID && node->ne[2] != 1) {
                use_cuda_graph = false; // only batch 1 MUL_MAT_ID is captured
            }
"""


@pytest.mark.parametrize("snippet, moe_off", [(F7_SNIPPET, True), (NEWER_SNIPPET, False)])
def test_the_engines_own_source_says_whether_moe_graphs_are_captured(tmp_path, snippet, moe_off):
    cu = tmp_path / "ggml/src/ggml-cuda/ggml-cuda.cu"
    cu.parent.mkdir(parents=True)
    cu.write_text(snippet)
    facts = cuda.build_facts(tmp_path, {"GGML_CUDA": "ON"})
    assert facts == {"cuda_graphs_built": True, "cuda_graphs_moe_disabled": moe_off}
    assert cuda.build_facts(tmp_path, {"GGML_CUDA": "OFF"})["cuda_graphs_built"] is None  # a CPU build


def test_a_cell_records_its_graphs_state():
    built = {"cuda_graphs_built": True, "cuda_graphs_moe_disabled": True}
    assert cuda.cell_state("cpu", built, True, {}) == "n/a"
    assert cuda.cell_state("cuda", built, False, {}) == "on"
    assert cuda.cell_state("cuda", built, True, {}) == "disabled by the engine for MoE"
    assert cuda.cell_state("cuda", built, False, {"GGML_CUDA_DISABLE_GRAPHS": "1"}) == "off (GGML_CUDA_DISABLE_GRAPHS)"
    assert cuda.cell_state("cuda", {"cuda_graphs_built": False}, False, {}) == "off (not built)"
    assert set(cuda.STATES) >= {cuda.cell_state("cuda", built, m, {}) for m in (True, False)}


def test_the_study_engine_disables_graphs_for_moe():
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "results/engine/llama.cpp-f7cd13301/source"
    if not src.is_dir():
        pytest.skip("the study engine's source is not fetched here")
    assert cuda.build_facts(src, {"GGML_CUDA": "ON"})["cuda_graphs_moe_disabled"] is True


def test_the_gpu_check_refuses_a_host_without_an_nvidia_gpu_naming_what_it_looked_for(tmp_path):
    import shutil
    from pathlib import Path

    if shutil.which("nvidia-smi"):
        pytest.skip("this host has nvidia-smi: run tools/gpu_check.sh itself")
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run(["bash", str(root / "tools/gpu_check.sh"), str(tmp_path / "out")], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2
    assert "gpu_check: refused: no nvidia-smi on PATH" in p.stderr and "/dev/nvidia0" in p.stderr
    assert not (tmp_path / "out").exists()  # nothing built or written
