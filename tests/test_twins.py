"""The twin writer on a tiny spec, read back with gguf's reader."""
import hashlib

import numpy as np
import pytest
from gguf import GGUFReader

from edgemoe.architectures import ArchSpec
from edgemoe.twins import BLOCK_MAGNITUDE, fit_vocab, write_twin

SPEC = dict(arch="olmoe", n_layer=2, n_embd=256, n_head=4, n_head_kv=4, head_dim=64, n_ff=256, n_expert=8,
            n_expert_used=2, n_vocab=1000, context_length=4096, rope_theta=1e4, rms_eps=1e-5,
            tied_embeddings=False)
VOCAB = {  # a small BPE vocabulary in the shape load_vocab returns
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.tokens": [chr(33 + i) for i in range(90)] + ["Ċ", "Ġ"],
    "tokenizer.ggml.token_type": [1] * 92,
    "tokenizer.ggml.merges": ["Ġ a"],
    "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 0,
}


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    d = tmp_path_factory.mktemp("twin")
    spec = ArchSpec.from_config("t", SPEC)
    info = write_twin(spec, "t", 7, VOCAB, d / "a.gguf", progress=False)
    write_twin(spec, "t", 7, VOCAB, d / "b.gguf", progress=False)
    write_twin(spec, "t", 8, VOCAB, d / "c.gguf", progress=False)
    return spec, info, d


def sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_tensors_and_metadata_match_the_spec(twin):
    spec, info, d = twin
    r = GGUFReader(d / "a.gguf")
    got = {t.name: (tuple(int(x) for x in reversed(t.shape)), t.tensor_type.name) for t in r.tensors}
    want = {t.name: (t.shape, t.dtype) for t in spec.tensors()}
    assert got == want
    assert r.fields["olmoe.expert_count"].contents() == 8
    assert r.fields["olmoe.expert_used_count"].contents() == 2
    assert r.fields["tokenizer.ggml.pre"].contents() == "olmo"
    assert len(r.fields["tokenizer.ggml.tokens"].contents()) == 1000  # padded to n_vocab
    assert info["params_total"] == sum(int(np.prod(t.shape)) for t in spec.tensors())


def test_deterministic_for_a_seed(twin):
    _, _, d = twin
    assert sha(d / "a.gguf") == sha(d / "b.gguf")
    assert sha(d / "a.gguf") != sha(d / "c.gguf")


def test_block_magnitudes_spread_like_the_configured_distribution(twin):
    _, _, d = twin
    r = GGUFReader(d / "a.gguf")
    t = next(t for t in r.tensors if t.name == "blk.0.ffn_up_exps.weight")
    blocks = np.abs(np.asarray(t.data, dtype=np.float32).reshape(-1, 32)).max(axis=1)
    m, s = BLOCK_MAGNITUDE["ffn_up"]
    logs = np.log2(blocks)
    assert abs(logs.mean() - m) < 0.05 and abs(logs.std() - s) < 0.05


def test_vocab_truncation_keeps_special_ids_valid():
    v = fit_vocab(dict(VOCAB, **{"tokenizer.ggml.eos_token_id": 91}), 50, "llama-bpe")
    assert len(v["tokenizer.ggml.tokens"]) == 50 and v["tokenizer.ggml.eos_token_id"] == 0
    assert v["tokenizer.ggml.pre"] == "llama-bpe"


def test_twin_of_a_gguf_keeps_names_shapes_metadata_and_fits_block_spread(twin, tmp_path):
    from edgemoe.twins import block_magnitudes, twin_of

    _, _, d = twin
    info = twin_of(d / "a.gguf", tmp_path / "of.gguf", seed=3, progress=False)
    src, out = GGUFReader(d / "a.gguf"), GGUFReader(tmp_path / "of.gguf")
    assert [(t.name, list(t.shape), t.tensor_type) for t in src.tensors] == \
        [(t.name, list(t.shape), t.tensor_type) for t in out.tensors]
    for key in ("olmoe.expert_count", "olmoe.block_count", "tokenizer.ggml.pre"):
        assert out.fields[key].contents() == src.fields[key].contents()
    assert out.fields["edgemoe.twin.of"].contents() == "a.gguf" and info["quant"] == "F16"
    a, b = block_magnitudes(src), block_magnitudes(out)
    for name in ("blk.0.ffn_up_exps.weight", "token_embd.weight", "blk.1.attn_q.weight"):
        assert abs(a[name][0] - b[name][0]) < 0.05 and abs(a[name][1] - b[name][1]) < 0.05
    assert sha(d / "a.gguf") != sha(tmp_path / "of.gguf")  # no weights copied


def test_router_skew_makes_low_experts_heavier(tmp_path):
    spec = ArchSpec.from_config("t", SPEC)
    write_twin(spec, "t", 7, VOCAB, tmp_path / "skew.gguf", progress=False, router_skew=1.0)
    r = GGUFReader(tmp_path / "skew.gguf")
    router = np.asarray(next(t for t in r.tensors if t.name == "blk.0.ffn_gate_inp.weight").data)
    norms = np.linalg.norm(router.reshape(8, -1), axis=1)
    assert norms[0] > 3 * norms[-1]
    assert r.fields["edgemoe.twin.router_skew"].contents() == 1.0


@pytest.mark.parametrize("m,s", [(-4.5, 0.4), (-3.5, 0.7), (-4.5, 0.2), (-8.0, 0.5)])
def test_block_magnitudes_follow_the_target_on_both_paths(m, s):
    """The exponent-shift path (s >= 0.3, shifts in range) and the float path (the others) both give
    log2(block absmax) ~ N(m, s), deterministically for a seed."""
    from edgemoe.architectures import TensorSpec
    from edgemoe.twins import _unit_pool, tensor_chunks

    t = TensorSpec("blk.0.ffn_up.weight", (2048, 1024), "F16", "ffn_up")
    pool = _unit_pool(7)
    values = np.concatenate(list(tensor_chunks(t, 3, 7, pool, (m, s))))
    assert values.dtype == np.float16 and values.size == 2048 * 1024
    log2_absmax = np.log2(np.abs(values.astype(np.float32)).reshape(-1, 32).max(axis=1))
    assert abs(log2_absmax.mean() - m) < 0.02 and abs(log2_absmax.std() - s) < 0.02
    again = np.concatenate(list(tensor_chunks(t, 3, 7, _unit_pool(7), (m, s))))
    assert np.array_equal(values.view(np.uint16), again.view(np.uint16))
