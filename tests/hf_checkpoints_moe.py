"""Tiny Hugging Face-format checkpoints of the MoE families (edgemoe/architectures_moe.py), for
offline conversion tests: Granite-3.0 MoE and dense, Qwen1.5-MoE. Same recipe as
tests/hf_checkpoints.py (bf16 random weights from a seed, tokenizers rebuilt from the engine tree:
refact for Granite, qwen2 for Qwen1.5), the HF tensor names of each model's modeling code: Granite
MoE's experts fused as block_sparse_moe.input_linear (gate and up stacked) / output_linear,
Qwen2-MoE's mlp.experts.<e>.*, shared_expert.* and the (1, hidden) shared_expert_gate.
DeepSeek-V2 is not here: its tokenizer (deepseek-llm pre-tokenizer) is not rebuilt yet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from hf_checkpoints import count_params, tokenizer_files, write_safetensors

ARCHS = ("granitemoe", "granite", "qwen2moe")
VOCAB = {"granitemoe": "refact", "granite": "refact", "qwen2moe": "qwen2"}
_GRANITE = {"hidden_act": "silu", "max_position_embeddings": 4096, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
            "attention_bias": False, "attention_dropout": 0.0, "tie_word_embeddings": True, "vocab_size": 49152,
            "embedding_multiplier": 12.0, "attention_multiplier": 0.015625, "residual_multiplier": 0.22,
            "logits_scaling": 6.0, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0, "torch_dtype": "bfloat16"}
CONFIGS: dict[str, dict[str, Any]] = {
    "granitemoe": {"architectures": ["GraniteMoeForCausalLM"], "model_type": "granitemoe", "hidden_size": 256,
                   "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                   "num_local_experts": 8, "num_experts_per_tok": 2, **_GRANITE},
    "granite": {"architectures": ["GraniteForCausalLM"], "model_type": "granite", "hidden_size": 256,
                "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                **_GRANITE, "logits_scaling": 8.0},
    "qwen2moe": {"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "hidden_size": 256,
                 "intermediate_size": 1024, "moe_intermediate_size": 256, "shared_expert_intermediate_size": 1024,
                 "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "num_experts": 8,
                 "num_experts_per_tok": 2, "norm_topk_prob": False, "decoder_sparse_step": 1, "hidden_act": "silu",
                 "max_position_embeddings": 8192, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
                 "tie_word_embeddings": False, "vocab_size": 151936, "bos_token_id": 151643,
                 "eos_token_id": 151643, "torch_dtype": "bfloat16", "use_sliding_window": False},
}


def _weights(arch: str, cfg: dict, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, V = d // nh, cfg["vocab_size"]

    def w(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)

    t = {"model.embed_tokens.weight": w(V, d), "model.norm.weight": 1 + w(d)}
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = w(V, d)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t.update({p + "self_attn.q_proj.weight": w(nh * hd, d), p + "self_attn.k_proj.weight": w(nkv * hd, d),
                  p + "self_attn.v_proj.weight": w(nkv * hd, d), p + "self_attn.o_proj.weight": w(d, nh * hd),
                  p + "input_layernorm.weight": 1 + w(d), p + "post_attention_layernorm.weight": 1 + w(d)})
        if arch == "granitemoe":
            E, ff = cfg["num_local_experts"], cfg["intermediate_size"]
            t[p + "block_sparse_moe.router.layer.weight"] = w(E, d)
            t[p + "block_sparse_moe.input_linear.weight"] = w(E, 2 * ff, d)  # gate then up
            t[p + "block_sparse_moe.output_linear.weight"] = w(E, d, ff)
        elif arch == "granite":
            ff = cfg["intermediate_size"]
            t.update({p + "mlp.gate_proj.weight": w(ff, d), p + "mlp.up_proj.weight": w(ff, d),
                      p + "mlp.down_proj.weight": w(d, ff)})
        else:  # qwen2moe
            for n, dim in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd)):
                t[p + f"self_attn.{n}_proj.bias"] = w(dim)
            E, ff, sff = cfg["num_experts"], cfg["moe_intermediate_size"], cfg["shared_expert_intermediate_size"]
            t[p + "mlp.gate.weight"] = w(E, d)
            for e in range(E):
                q = f"{p}mlp.experts.{e}."
                t.update({q + "gate_proj.weight": w(ff, d), q + "up_proj.weight": w(ff, d), q + "down_proj.weight": w(d, ff)})
            t.update({p + "mlp.shared_expert.gate_proj.weight": w(sff, d), p + "mlp.shared_expert.up_proj.weight": w(sff, d),
                      p + "mlp.shared_expert.down_proj.weight": w(d, sff), p + "mlp.shared_expert_gate.weight": w(1, d)})
    return t


def build_checkpoint(arch: str, out_dir: Path, engine_src: Path, *, seed: int = 0,
                     cache_dir: Path | None = None) -> dict[str, Any]:
    """Write a tiny HF checkpoint of `arch` into out_dir; returns its config and parameter count."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = dict(CONFIGS[arch])
    tensors = _weights(arch, cfg, seed)
    write_safetensors(out_dir / "model.safetensors", tensors)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": cfg["eos_token_id"]}) + "\n")
    for name, data in tokenizer_files(VOCAB[arch], engine_src, cache_dir).items():
        (out_dir / name).write_bytes(data)
    return {"arch": arch, "config": cfg, "n_params": count_params(tensors)}
