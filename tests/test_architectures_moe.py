"""The MoE families beyond OLMoE (edgemoe/architectures_moe.py) and their dense siblings: parameter
counts against the published configs, tensor names and shapes against llama.cpp f7cd13301's loader."""
import os
import re
from pathlib import Path

import pytest

from edgemoe.architectures import ArchSpec, spec_from_hf_config

ROOT = Path(__file__).resolve().parents[1]

# The published config.json keys (../shared/moe-models.md; the dense siblings' from their model
# cards: Granite-3.0-2B/8B and Qwen1.5-1.8B).
PUBLISHED = {
    "granite-3.0-1b-a400m": {
        "architectures": ["GraniteMoeForCausalLM"], "num_hidden_layers": 24, "hidden_size": 1024,
        "intermediate_size": 512, "num_local_experts": 32, "num_experts_per_tok": 8, "num_attention_heads": 16,
        "num_key_value_heads": 8, "vocab_size": 49155, "tie_word_embeddings": True, "max_position_embeddings": 4096,
        "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "embedding_multiplier": 12.0, "attention_multiplier": 0.015625,
        "residual_multiplier": 0.22, "logits_scaling": 6.0},
    "granite-3.0-3b-a800m": {
        "architectures": ["GraniteMoeForCausalLM"], "num_hidden_layers": 32, "hidden_size": 1536,
        "intermediate_size": 512, "num_local_experts": 40, "num_experts_per_tok": 8, "num_attention_heads": 24,
        "num_key_value_heads": 8, "vocab_size": 49155, "tie_word_embeddings": True, "max_position_embeddings": 4096,
        "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "embedding_multiplier": 12.0, "attention_multiplier": 0.015625,
        "residual_multiplier": 0.22, "logits_scaling": 6.0},
    "granite-3.0-2b": {
        "architectures": ["GraniteForCausalLM"], "num_hidden_layers": 40, "hidden_size": 2048,
        "intermediate_size": 8192, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 49155,
        "tie_word_embeddings": True, "max_position_embeddings": 4096, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
        "embedding_multiplier": 12.0, "attention_multiplier": 0.015625, "residual_multiplier": 0.22,
        "logits_scaling": 8.0},
    "granite-3.0-8b": {
        "architectures": ["GraniteForCausalLM"], "num_hidden_layers": 40, "hidden_size": 4096,
        "intermediate_size": 12800, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 49155,
        "tie_word_embeddings": True, "max_position_embeddings": 4096, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
        "embedding_multiplier": 12.0, "attention_multiplier": 0.0078125, "residual_multiplier": 0.22,
        "logits_scaling": 16.0},
    "qwen1.5-moe-a2.7b": {
        "architectures": ["Qwen2MoeForCausalLM"], "num_hidden_layers": 24, "hidden_size": 2048,
        "intermediate_size": 5632, "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
        "num_experts": 60, "num_experts_per_tok": 4, "num_attention_heads": 16, "num_key_value_heads": 16,
        "vocab_size": 151936, "tie_word_embeddings": False, "max_position_embeddings": 32768,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-6},
    "qwen1.5-1.8b": {
        "architectures": ["Qwen2ForCausalLM"], "num_hidden_layers": 24, "hidden_size": 2048,
        "intermediate_size": 5504, "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 151936,
        "tie_word_embeddings": False, "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6},
    "deepseek-v2-lite": {
        "architectures": ["DeepseekV2ForCausalLM"], "num_hidden_layers": 27, "hidden_size": 2048,
        "intermediate_size": 10944, "moe_intermediate_size": 1408, "n_routed_experts": 64, "num_experts_per_tok": 6,
        "n_shared_experts": 2, "first_k_dense_replace": 1, "num_attention_heads": 16, "num_key_value_heads": 16,
        "q_lora_rank": None, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
        "vocab_size": 102400, "tie_word_embeddings": False, "max_position_embeddings": 163840, "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6, "routed_scaling_factor": 1.0, "norm_topk_prob": False, "scoring_func": "softmax",
        "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "mscale": 0.707,
                         "mscale_all_dim": 0.707, "beta_fast": 32, "beta_slow": 1}},
}
# Published totals / active (billions, as the publishers round them) and the convention of "active":
# Granite quotes non-embedding active, Qwen counts everything, DeepSeek leaves out the input embedding.
PUBLISHED_B = {"granite-3.0-1b-a400m": (1.3, 0.4), "granite-3.0-3b-a800m": (3.3, 0.8), "granite-3.0-2b": (2.5, None),
               "granite-3.0-8b": (8.2, None), "qwen1.5-moe-a2.7b": (14.3, 2.7), "qwen1.5-1.8b": (1.8, None),
               "deepseek-v2-lite": (15.7, 2.4)}
KV_KIB = {"granite-3.0-1b-a400m": 48, "granite-3.0-3b-a800m": 64, "qwen1.5-moe-a2.7b": 192, "deepseek-v2-lite": 270}


def counts(c: dict) -> tuple[int, int, int]:
    """(total, active, input embedding) from a config.json with ../shared/moe-models.md's formulas."""
    H, L, V = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    n_h = c["num_attention_heads"]
    n_kv = c.get("num_key_value_heads", n_h)
    if "kv_lora_rank" in c:  # MLA without q-LoRA
        r, nope, rope, dv = c["kv_lora_rank"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        attn = H * n_h * (nope + rope) + H * (r + rope) + r + r * n_h * (nope + dv) + n_h * dv * H
    else:
        d = H // n_h
        attn = H * n_h * d + 2 * H * n_kv * d + n_h * d * H
        if c["architectures"][0].startswith("Qwen2"):
            attn += n_h * d + 2 * n_kv * d  # qkv biases
    E = c.get("num_local_experts") or c.get("num_experts") or c.get("n_routed_experts") or 0
    k = c.get("num_experts_per_tok", 0)
    I_e = c.get("moe_intermediate_size") or c["intermediate_size"]
    shared = 0
    if "shared_expert_intermediate_size" in c:
        shared = 3 * H * c["shared_expert_intermediate_size"] + H
    if "n_shared_experts" in c:
        shared = c["n_shared_experts"] * 3 * H * I_e
    dense_layers = c.get("first_k_dense_replace", 0) if E else L
    moe_layers = L - dense_layers
    dense = attn + 3 * H * c["intermediate_size"] + 2 * H
    moe_total = attn + E * 3 * H * I_e + H * E + shared + 2 * H
    moe_active = attn + k * 3 * H * I_e + H * E + shared + 2 * H
    embed = V * H * (1 if c["tie_word_embeddings"] else 2) + H
    total = dense_layers * dense + moe_layers * moe_total + embed
    active = dense_layers * dense + moe_layers * moe_active + embed
    return total, active, V * H


@pytest.fixture(scope="module")
def specs(default_config):
    return {m: ArchSpec.from_config(m, default_config["models"][m]["spec"]) for m in PUBLISHED}


@pytest.mark.parametrize("model", PUBLISHED)
def test_counts_equal_the_published_configs_to_the_parameter(specs, model):
    total, active, embed = counts(PUBLISHED[model])
    spec = specs[model]
    assert spec.total_params() == total
    assert spec.active_params() == active
    pub_total, pub_active = PUBLISHED_B[model]
    assert round(total / 1e9, 1) == pub_total
    if pub_active is not None:
        arch = spec.arch
        quoted = active - embed * (arch != "qwen2moe")  # granite: no embedding (tied); deepseek: no input one
        assert abs(quoted / 1e9 - pub_active) < 0.06  # DeepSeek's "2.4B" is 2.45 B cut, not rounded
    if model in KV_KIB:
        assert spec.kv_bytes_per_token() == KV_KIB[model] * 1024


def test_exact_counts_are_pinned(specs):
    got = {m: (s.total_params(), s.active_params()) for m, s in specs.items()}
    assert got == {
        "granite-3.0-1b-a400m": (1_334_628_352, 428_658_688), "granite-3.0-3b-a800m": (3_298_793_472, 882_874_368),
        "granite-3.0-2b": (2_533_531_648,) * 2, "granite-3.0-8b": (8_170_848_256,) * 2,
        "qwen1.5-moe-a2.7b": (14_315_784_192, 2_689_173_504), "qwen1.5-1.8b": (1_836_828_672,) * 2,
        "deepseek-v2-lite": (15_706_484_224, 2_661_150_208)}


@pytest.mark.parametrize("model", PUBLISHED)
def test_spec_from_the_published_config_json_is_the_registry_spec(default_config, model):
    assert spec_from_hf_config(PUBLISHED[model]) == default_config["models"][model]["spec"]


def test_the_first_four_specs_and_derived_twin_hashes_do_not_change(default_config):
    """Twin tags hash spec.to_config() (derived twins) or the registry spec: the new None fields
    must leave both as they were before the families were added (values from before)."""
    from edgemoe import counterfactuals as cf
    from edgemoe.experiment_types import content_hash

    base = ArchSpec.from_config("o", default_config["models"]["olmoe-1b-7b"]["spec"])
    got = {m: content_hash(ArchSpec.from_config(m, default_config["models"][m]["spec"]).to_config())[:8]
           for m in ("olmoe-1b-7b", "llama-3.2-1b", "qwen2.5-1.5b", "gemma-2-2b")}
    got.update({d: content_hash(cf.derive(d, base, ["Q4_K_M"]).to_config())[:8] for d in cf.family("olmoe-1b-7b")})
    assert got == {"olmoe-1b-7b": "4524024b", "llama-3.2-1b": "ee2b26fb", "qwen2.5-1.5b": "c6a3593e",
                   "gemma-2-2b": "eb68521c", "olmoe-1b-7b@moe": "9e60e2b6", "olmoe-1b-7b@dense-active": "66d3e559",
                   "olmoe-1b-7b@dense-total": "1b9fa6b4"}
    assert default_config["experiment"]["models"] == ["olmoe-1b-7b", "llama-3.2-1b", "qwen2.5-1.5b", "gemma-2-2b"]


def _ne(spec, name):
    """ggml ne of a tensor (numpy shape reversed), as llama.cpp's create_tensor states it."""
    return list(reversed(next(t for t in spec.tensors() if t.name == name).shape))


def test_shapes_follow_llama_cpp_load_tensors(specs):
    # src/llama.cpp f7cd13301, llm_load_tensors: case LLM_ARCH_GRANITE_MOE (the llama block)
    g = specs["granite-3.0-1b-a400m"]
    assert _ne(g, "blk.0.attn_q.weight") == [1024, 1024] and _ne(g, "blk.0.attn_k.weight") == [1024, 512]
    assert _ne(g, "blk.23.ffn_gate_exps.weight") == [1024, 512, 32]
    assert _ne(g, "blk.23.ffn_down_exps.weight") == [512, 1024, 32]
    assert _ne(g, "blk.0.ffn_gate_inp.weight") == [1024, 32]
    assert "output.weight" not in {t.name for t in g.tensors()}  # tied: TENSOR_DUPLICATED token_embd
    # case LLM_ARCH_QWEN2MOE
    q = specs["qwen1.5-moe-a2.7b"]
    assert _ne(q, "blk.0.ffn_gate_exps.weight") == [2048, 1408, 60]
    assert _ne(q, "blk.0.ffn_gate_inp_shexp.weight") == [2048, 1]  # {n_embd}, written (1, n_embd) unsqueezed
    assert _ne(q, "blk.0.ffn_down_shexp.weight") == [5632, 2048]
    assert _ne(q, "blk.0.attn_k.bias") == [2048] and _ne(q, "output.weight") == [2048, 151936]
    # case LLM_ARCH_DEEPSEEK2, is_lite: wq {n_embd, n_embd_k_gqa}, wkv_a_mqa {n_embd, kv_lora_rank + n_rot},
    # wkv_b {kv_lora_rank, n_head * (nope + v)}, wo {n_head * v, n_embd}
    d = specs["deepseek-v2-lite"]
    assert _ne(d, "blk.1.attn_q.weight") == [2048, 16 * 192]
    assert _ne(d, "blk.1.attn_kv_a_mqa.weight") == [2048, 512 + 64]
    assert _ne(d, "blk.1.attn_kv_b.weight") == [512, 16 * (128 + 128)]
    assert _ne(d, "blk.1.attn_output.weight") == [16 * 128, 2048]
    assert _ne(d, "blk.1.attn_kv_a_norm.weight") == [512]
    assert _ne(d, "blk.0.ffn_gate.weight") == [2048, 10944]  # leading dense block
    names = {t.name for t in d.tensors()}
    assert "blk.0.ffn_gate_inp.weight" not in names and "blk.0.ffn_gate_exps.weight" not in names
    assert _ne(d, "blk.26.ffn_up_shexp.weight") == [2048, 2 * 1408]
    assert _ne(d, "blk.26.ffn_down_exps.weight") == [1408, 2048, 64]
    assert not any("attn_q_a" in n or "attn_k.weight" in n or "attn_v.weight" in n for n in names)
    assert {t.dtype for t in d.tensors() if t.kind in ("norm", "router")} == {"F32"}


def test_metadata_keys_are_the_converters(specs):
    g = specs["granite-3.0-2b"].gguf_metadata("g")
    assert g["general.architecture"] == "granite" and g["granite.logit_scale"] == 8.0
    assert g["granite.attention.scale"] == 0.015625 and g["granite.embedding_scale"] == 12.0
    assert g["granite.residual_scale"] == 0.22 and g["granite.rope.dimension_count"] == 64
    q = specs["qwen1.5-moe-a2.7b"].gguf_metadata("q")
    assert (q["qwen2moe.expert_feed_forward_length"], q["qwen2moe.expert_shared_feed_forward_length"]) == (1408, 5632)
    assert (q["qwen2moe.expert_count"], q["qwen2moe.expert_used_count"], q["qwen2moe.feed_forward_length"]) == (60, 4, 5632)
    d = specs["deepseek-v2-lite"].gguf_metadata("d")
    want = {"deepseek2.attention.kv_lora_rank": 512, "deepseek2.attention.key_length": 192,
            "deepseek2.attention.value_length": 128, "deepseek2.rope.dimension_count": 64,
            "deepseek2.leading_dense_block_count": 1, "deepseek2.expert_shared_count": 2,
            "deepseek2.expert_feed_forward_length": 1408, "deepseek2.expert_weights_scale": 1.0,
            "deepseek2.expert_weights_norm": False, "deepseek2.expert_gating_func": 1,
            "deepseek2.feed_forward_length": 10944, "deepseek2.rope.scaling.type": "yarn",
            "deepseek2.rope.scaling.factor": 40.0, "deepseek2.rope.scaling.original_context_length": 4096}
    assert {k: d[k] for k in want} == want
    assert d["deepseek2.rope.scaling.yarn_log_multiplier"] == pytest.approx(0.0707)
    assert "deepseek2.attention.q_lora_rank" not in d  # Lite: q_lora_rank null, not written


@pytest.mark.parametrize("model, change, message", [
    ("deepseek-v2-lite", {"n_layer": 26}, "Lite"),
    ("deepseek-v2-lite", {"n_head_kv": 8}, "n_head_kv"),
    ("deepseek-v2-lite", {"tied_embeddings": True}, "output"),
    ("granite-3.0-2b", {"logit_scale": None}, "logit_scale"),
    ("granite-3.0-2b", {"n_expert": 8, "n_expert_used": 2}, "granitemoe"),
    ("qwen1.5-moe-a2.7b", {"n_ff_shexp": None}, "n_ff_shexp"),
    ("qwen1.5-1.8b", {"n_ff_exp": 1408}, "only apply"),
])
def test_bad_family_specs_are_named(default_config, model, change, message):
    spec = {k: v for k, v in dict(default_config["models"][model]["spec"], **change).items() if v is not None}
    with pytest.raises(ValueError, match=message):
        ArchSpec.from_config(model, spec)


def _engine_tree() -> Path | None:
    for p in (os.environ.get("EDGEMOE_ENGINE_SRC"), ROOT / "results/engine/llama.cpp-f7cd13301/source"):
        if p and (Path(p) / "src/llama-arch.cpp").is_file():
            return Path(p)
    return None


def _arch_names(src: Path, enum: str) -> set[str]:
    """Tensor names of one architecture in src/llama-arch.cpp's LLM_TENSOR_NAMES table."""
    text = (src / "src/llama-arch.cpp").read_text()
    block = re.search(r"\{\s*" + enum + r",\s*\{(.*?)\n\s*\},\n\s*\}", text, re.S)
    return set(re.findall(r'"([a-z0-9_.%]+)"\s*\}', block.group(1)))


@pytest.mark.skipif(_engine_tree() is None, reason="needs the llama.cpp f7cd13301 tree (EDGEMOE_ENGINE_SRC)")
@pytest.mark.parametrize("model, enum", [("granite-3.0-1b-a400m", "LLM_ARCH_GRANITE_MOE"),
                                         ("granite-3.0-2b", "LLM_ARCH_GRANITE"),
                                         ("qwen1.5-moe-a2.7b", "LLM_ARCH_QWEN2MOE"),
                                         ("deepseek-v2-lite", "LLM_ARCH_DEEPSEEK2")])
def test_every_tensor_name_is_in_the_engines_table(specs, model, enum):
    known = _arch_names(_engine_tree(), enum)
    ours = {re.sub(r"blk\.\d+\.", "blk.%d.", t.name).rsplit(".", 1)[0] for t in specs[model].tensors()}
    assert ours <= known, ours - known


def test_granite_moe_counterfactuals_are_granite_dense_twins(specs):
    from edgemoe import counterfactuals as cf

    base = specs["granite-3.0-1b-a400m"]
    moe, active, total = (cf.derive(m, base, ["Q4_K_M"]) for m in cf.family("granite-3.0-1b-a400m"))
    assert (moe.arch, active.arch, total.arch) == ("granitemoe", "granite", "granite")
    assert (active.n_ff, total.n_ff, active.n_expert) == (8 * 512, 32 * 512, 0)
    assert moe.total_params() == base.total_params()
    assert base.active_params() - active.total_params() == 24 * 1024 * 32  # the routers alone
    for s in (moe, active, total):
        s.check("g")
        assert (s.logit_scale, s.residual_scale) == (base.logit_scale, base.residual_scale)
    for m in ("qwen1.5-moe-a2.7b", "deepseek-v2-lite"):
        with pytest.raises(cf.DerivationError, match="shared experts"):
            cf.derive(f"{m}@dense-active", specs[m])
