"""Quantized twins written directly (edgemoe.twins_quantized): block packing checked against gguf-py's
dequantizers; with a llama.cpp build, the direct file against llama-quantize of the F16 twin."""
import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from conftest import ROOT
from gguf import GGUFReader
from gguf.quants import dequantize

from edgemoe import twins_quantized as tq
from edgemoe.architectures import ArchSpec, TensorSpec
from edgemoe.files import sha256_file
from edgemoe.twins import BLOCK_MAGNITUDE, load_vocab, vocab_name, write_twin


def unit_blocks(rng, n32):
    u = rng.standard_normal((n32, 32)).astype(np.float32)
    return u / np.abs(u).max(axis=1, keepdims=True)


@pytest.mark.parametrize("qtype", sorted(tq.FORMATS))
def test_blocks_dequantize_to_the_drawn_magnitudes_and_shapes(qtype):
    f = tq.FORMATS[qtype]
    rng = np.random.default_rng(1)
    n = 2048
    u = unit_blocks(rng, n * f.qk // 32)
    absmax = np.exp2(rng.normal(-4.5, 0.5, size=(n, f.qk // 32))).astype(np.float32)
    b = tq.blocks(qtype, absmax, tq.payload(qtype, u.reshape(n, f.qk)), np.exp2(rng.random(n)))
    assert b.shape == (n, f.size) and b.dtype == np.uint8
    y = dequantize(b, gguf.GGMLQuantizationType[qtype]).reshape(-1, 32)
    assert np.isfinite(y).all()
    ratio = np.abs(y).max(axis=1) / absmax.reshape(-1)
    assert 0.75 <= ratio.min() and ratio.max() <= 1.25  # [-8, 7] grids, rounding of small sub-block scales
    assert 0.97 <= np.median(ratio) <= 1.01
    logs = np.log2(np.abs(y).max(axis=1))
    assert abs(logs.mean() - -4.5) < 0.15 and abs(logs.std() - 0.5) < 0.05
    # each block is its unit weights on the type's grid (signs and shape kept)
    corr = np.einsum("ij,ij->i", y, u) / np.linalg.norm(y, axis=1) / np.linalg.norm(u, axis=1)
    assert corr.min() > 0.97


@pytest.mark.parametrize("qtype", sorted(tq.FORMATS))
def test_no_scale_is_an_f16_subnormal_even_for_tiny_blocks(qtype):
    f = tq.FORMATS[qtype]
    rng = np.random.default_rng(2)
    n = 512
    absmax = np.full((n, f.qk // 32), 2.0 ** -12, np.float32)  # Q6_K's d would be 2**-23 by the formula
    b = tq.blocks(qtype, absmax, tq.payload(qtype, unit_blocks(rng, n * f.qk // 32).reshape(n, f.qk)),
                  np.exp2(rng.random(n)))
    d = b.view(np.uint16)[:, dict(f.header)["d"] // 2].view(np.float16).astype(np.float32)
    assert (d >= 2.0 ** -14).all() and np.isfinite(d).all()
    assert len(np.unique(d)) > n // 4  # spread over a binade, not piled up at 2**-14
    assert np.isfinite(dequantize(b, gguf.GGMLQuantizationType[qtype])).all()


def test_quant_chunks_follow_the_tensor_kind_and_are_deterministic():
    t = TensorSpec("blk.0.ffn_down_exps.weight", (4, 512, 1024), "F16", "ffn_down", True)
    pool, normal = tq.type_pool(3, "Q6_K"), tq.normal_pool(3)
    a = np.concatenate(list(tq._quant_chunks(t, 7, 3, "Q6_K", pool, normal)))
    b = np.concatenate(list(tq._quant_chunks(t, 7, 3, "Q6_K", pool, normal)))
    assert a.shape == (t.n_elements // 256, 210) and np.array_equal(a, b)
    logs = np.log2(np.abs(dequantize(a, gguf.GGMLQuantizationType.Q6_K).reshape(-1, 32)).max(axis=1))
    m, s = BLOCK_MAGNITUDE["ffn_down"]
    assert abs(logs.mean() - m) < 0.1 and abs(logs.std() - s) < 0.05


def test_the_probe_keeps_row_lengths_and_names_and_shrinks_the_rest():
    spec = ArchSpec.from_config("t", SPECS["olmoe-moe"])
    for full, probe in zip(spec.tensors(), tq.probe_tensors(spec)):
        assert probe.name == full.name and probe.dtype == full.dtype and len(probe.shape) == len(full.shape)
        assert probe.shape[-1] == full.shape[-1] and all(p == min(d, 2) for p, d in zip(probe.shape[:-1], full.shape))


def test_unsupported_types_are_named():
    tm = tq.TypeMap("IQ4_XS", (), (("a", "IQ4_XS"), ("b", "F32"), ("c", "Q4_K")), 0, 0.0)
    assert tm.unsupported() == ["IQ4_XS"]
    with pytest.raises(NotImplementedError, match="IQ4_XS"):
        tq.write_quantized_twin(ArchSpec.from_config("t", SPECS["llama-dense"]), 1, tm, Path("/nonexistent/x"))


# ---- against the real llama-quantize -------------------------------------------------------------
SPECS = {
    "olmoe-moe": dict(arch="olmoe", n_layer=2, n_embd=256, n_head=4, n_head_kv=4, head_dim=64, n_ff=256,
                      n_expert=4, n_expert_used=2, n_vocab=1000, context_length=4096, rope_theta=1e4,
                      rms_eps=1e-5, tied_embeddings=False),
    "llama-dense": dict(arch="llama", n_layer=3, n_embd=256, n_head=4, n_head_kv=2, head_dim=64, n_ff=512,
                        n_vocab=1000, context_length=4096, rope_theta=5e5, rms_eps=1e-5, tied_embeddings=True,
                        rope_scaling={"type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_context_length": 8192}),
    "llama-moe": dict(arch="llama", n_layer=2, n_embd=256, n_head=4, n_head_kv=4, head_dim=64, n_ff=256,
                      n_expert=8, n_expert_used=2, n_vocab=1000, context_length=4096, rope_theta=1e6,
                      rms_eps=1e-5, tied_embeddings=False),
    # row lengths that are not multiples of 256: llama-quantize falls back to Q5_0/Q8_0 or keeps F16
    "llama-odd": dict(arch="llama", n_layer=2, n_embd=320, n_head=5, n_head_kv=5, head_dim=64, n_ff=480,
                      n_vocab=1000, context_length=4096, rope_theta=1e4, rms_eps=1e-5, tied_embeddings=False),
}


def _engine(*extra_roots):
    """(llama-quantize, llama-bench, engine source) of a build: EDGEMOE_LLAMA_BIN_DIR (a folder with
    both binaries) and EDGEMOE_ENGINE_SRC, else the pipeline's own build under results/engine (of this
    checkout or of EDGEMOE_TEST_WORKDIR); None if there is none (the test is skipped)."""
    roots = [Path(os.environ["EDGEMOE_TEST_WORKDIR"])] if os.environ.get("EDGEMOE_TEST_WORKDIR") else []
    roots += list(extra_roots)
    for root in [*roots, ROOT]:
        for eng in sorted((root / "results/engine").glob("*/"), key=lambda e: "f7cd13301" not in e.name):
            q = sorted(eng.glob("build/*/bin/llama-quantize"), key=lambda p: p.parent.parent.name != "tools")
            b = sorted(eng.glob("build/*/bin/llama-bench"))
            if q and b and (eng / "source/models").is_dir():
                return q[0], b[0], eng / "source"
    d = os.environ.get("EDGEMOE_LLAMA_BIN_DIR")
    src = os.environ.get("EDGEMOE_ENGINE_SRC")
    if d and src and (Path(d) / "llama-quantize").is_file():
        return Path(d) / "llama-quantize", Path(d) / "llama-bench", Path(src)
    return None


@pytest.fixture(scope="module")
def engine(tmp_path_factory, request):
    found = _engine()
    if found is None:  # a fresh clone (CI): the integration tier's build (tests/test_pipeline.py made it)
        work = request.getfixturevalue("work")
        found = _engine(work)
    if found is None:  # this file alone: build the study engine's tools in the work folder
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2",  # the target before --configfile
                               "results/engine/llama.cpp-f7cd13301/build/tools/build-info.json", "--configfile",
                               "config/smoke.yaml"], cwd=work,
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"building the engine failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        found = _engine(work)
    assert found is not None, "no llama.cpp build after building one"
    return found, tmp_path_factory.mktemp("vocab")


def small_vocab(engine, spec):
    """The engine's vocabulary with its first 2000 merges: what gguf-py parses of 280k merges takes
    tens of seconds a file, and merges only matter for tokenizing text, which llama-bench never does."""
    (_, _, src), cache = engine
    v = dict(load_vocab(src, vocab_name(spec), cache))
    if "tokenizer.ggml.merges" in v:
        v["tokenizer.ggml.merges"] = v["tokenizer.ggml.merges"][:2000]
    return v


def structure(r):
    kv = [(k, f.types, f.contents()) for k, f in r.fields.items()]
    tensors = [(t.name, [int(x) for x in t.shape], t.tensor_type.name, int(t.data_offset)) for t in r.tensors]
    return kv, tensors


@pytest.mark.integration
@pytest.mark.parametrize("quant", ["Q4_K_M", "Q8_0"])
@pytest.mark.parametrize("case", sorted(SPECS))
def test_direct_file_is_what_llama_quantize_makes_in_structure_and_runs(engine, case, quant, tmp_path):
    quantize_exe, bench_exe, _ = engine[0]
    try:
        spec = ArchSpec.from_config(case, SPECS[case])
    except ValueError as e:
        pytest.skip(f"{case}: not a valid spec here ({e})")
    vocab = small_vocab(engine, spec)
    write_twin(spec, case, 5, vocab, tmp_path / "F16.gguf", progress=False, router_skew=0.5)
    subprocess.run([str(quantize_exe), str(tmp_path / "F16.gguf"), str(tmp_path / "ref.gguf"), quant, "2"],
                   check=True, capture_output=True)
    tm = tq.probe_type_map(spec, case, 5, vocab, quant, str(quantize_exe), 2, tmp_path, router_skew=0.5)
    assert not list(tmp_path.glob(".probe*")), "probe temporaries left behind"
    assert tm.f16_bytes == (tmp_path / "F16.gguf").stat().st_size
    if tm.unsupported():
        pytest.skip(f"{case} {quant}: {tm.unsupported()} not written directly (falls back to llama-quantize)")
    info = tq.write_quantized_twin(spec, 5, tm, tmp_path / "direct.gguf", router_skew=0.5, progress=False)

    ref, direct = tmp_path / "ref.gguf", tmp_path / "direct.gguf"
    rr, rd = GGUFReader(ref), GGUFReader(direct)
    (kv_r, t_r), (kv_d, t_d) = structure(rr), structure(rd)
    assert t_d == t_r  # names, order, shapes, types and data offsets
    assert kv_d == kv_r  # every KV pair, in order, with its types
    assert direct.stat().st_size == ref.stat().st_size == info["gguf_bytes"]
    assert info["gguf_sha256"] == sha256_file(direct)
    # what llama-quantize kept as it was (norms, the router) is the F16 twin's data, bit for bit
    f16_data = {t.name: np.asarray(t.data) for t in GGUFReader(tmp_path / "F16.gguf").tensors}
    for a, b in zip(rr.tensors, rd.tensors):
        if a.tensor_type.name in ("F32", "F16"):
            assert np.array_equal(np.asarray(b.data), f16_data[b.name]), b.name
        else:
            assert np.isfinite(dequantize(np.asarray(b.data), b.tensor_type)).all(), b.name
    proc = subprocess.run([str(bench_exe), "-m", str(direct), "-p", "0", "-n", "4", "-r", "1", "-t", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
