import pytest

from edgemoe.architectures import ArchSpec

# Exact counts from the models' config.json shapes (shared/paper-models.md); a real llama-bench
# run of OLMoE Q4_K_M reports 6919161856.
PAPER = {
    "olmoe-1b-7b": (6_919_161_856, 128),
    "llama-3.2-1b": (1_235_814_400 + 32, 32),  # + rope_freqs, as in a converted GGUF
    "qwen2.5-1.5b": (1_543_714_304, 28),
    "gemma-2-2b": (2_614_341_888, 104),
}


@pytest.mark.parametrize("model", PAPER)
def test_parameter_counts_and_kv_cache_match_the_paper(default_config, model):
    spec = ArchSpec.from_config(model, default_config["models"][model]["spec"])
    total, kv_kib = PAPER[model]
    assert spec.total_params() == total
    assert spec.kv_bytes_per_token() == kv_kib * 1024


def test_olmoe_active_parameters_are_about_1_3_billion(default_config):
    spec = ArchSpec.from_config("olmoe-1b-7b", default_config["models"]["olmoe-1b-7b"]["spec"])
    assert 1.25e9 < spec.active_params() < 1.32e9
    assert spec.active_params() < spec.total_params() / 5


def test_dense_models_have_all_parameters_active(default_config):
    spec = ArchSpec.from_config("qwen2.5-1.5b", default_config["models"]["qwen2.5-1.5b"]["spec"])
    assert spec.active_params() == spec.total_params()


def test_tensor_names_follow_llama_cpp(default_config):
    names = {t.name for t in ArchSpec.from_config("g", default_config["models"]["gemma-2-2b"]["spec"]).tensors()}
    assert {"blk.0.post_attention_norm.weight", "blk.25.post_ffw_norm.weight", "token_embd.weight"} <= names
    assert "output.weight" not in names  # tied
    olmoe = {t.name: t for t in ArchSpec.from_config("o", default_config["models"]["olmoe-1b-7b"]["spec"]).tensors()}
    assert olmoe["blk.3.ffn_up_exps.weight"].shape == (64, 1024, 2048)
    assert olmoe["blk.3.ffn_gate_inp.weight"].dtype == "F32"
    qwen = {t.name for t in ArchSpec.from_config("q", default_config["models"]["qwen2.5-1.5b"]["spec"]).tensors()}
    assert "blk.0.attn_q.bias" in qwen


def test_rope_freqs_follow_llama3_scaling(default_config):
    spec = ArchSpec.from_config("l", default_config["models"]["llama-3.2-1b"]["spec"])
    f = spec.rope_freqs()
    assert len(f) == 32 and f[0] == 1.0 and f[-1] == 32.0


@pytest.mark.parametrize("change, message", [
    ({"arch": "mamba"}, "arch"),
    ({"n_expert": 4, "n_expert_used": 8}, "n_expert_used"),
    ({"n_head": 15}, "n_head"),
    ({"surprise": 1}, "unknown keys"),
])
def test_bad_specs_are_named(default_config, change, message):
    spec = dict(default_config["models"]["olmoe-1b-7b"]["spec"], **change)
    with pytest.raises(ValueError, match=message):
        ArchSpec.from_config("olmoe-1b-7b", spec)


def test_spec_from_a_hugging_face_config_json(default_config):
    # Llama-3.2-1B's published config.json (the keys the spec needs)
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 8192,
           "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "head_dim": 64,
           "vocab_size": 128256, "max_position_embeddings": 131072, "rope_theta": 500000.0,
           "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
           "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                            "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
    from edgemoe.architectures import spec_from_hf_config

    spec = spec_from_hf_config(cfg)
    assert spec == default_config["models"]["llama-3.2-1b"]["spec"]
    with pytest.raises(ValueError, match="MambaForCausalLM"):
        spec_from_hf_config({"architectures": ["MambaForCausalLM"]})
