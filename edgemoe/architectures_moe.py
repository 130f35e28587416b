"""The MoE families beyond OLMoE, and their dense siblings, as llama.cpp f7cd13301 loads them.

- `granitemoe` (IBM Granite-3.0 MoE) and `granite` (its dense siblings): llama.cpp loads both with
  the llama loader and graph (src/llama.cpp, case LLM_ARCH_GRANITE/_MOE); the muP multipliers are
  four GGUF scalars (attention.scale, embedding_scale, residual_scale, logit_scale), all required.
- `qwen2moe` (Qwen1.5-MoE): qwen2 attention (q/k/v biases, q and o n_embd x n_embd), routed
  experts of `expert_feed_forward_length`, and one shared expert of
  `expert_shared_feed_forward_length` whose output is scaled by sigmoid(ffn_gate_inp_shexp . x).
- `deepseek2` (DeepSeek-V2-Lite): multi-head latent attention (a joint KV projection to a rank
  kv_lora_rank latent plus a shared rope key, expanded per head by attn_kv_b), the first
  `leading_dense_block_count` layers dense (width feed_forward_length), the rest routed experts
  plus n_shared_experts always-on experts fused into one FFN. f7cd13301 takes n_layer == 27 as
  "Lite" (no q-LoRA: one attn_q) and any other depth as having q_lora_rank (attn_q_a/attn_q_b).

Rows here are plain tuples (name, numpy shape, dtype, kind, expert); edgemoe.architectures wraps
them in TensorSpec (this module imports nothing from it). Shapes are numpy order (reversed ggml
ne), dtypes what convert_hf_to_gguf.py writes at --outtype f16: 1-D tensors, norms and routers
F32, the rest F16. Kinds reuse twins.BLOCK_MAGNITUDE's weight families.
"""

from __future__ import annotations

from typing import Any

ARCHS = ("granite", "granitemoe", "qwen2moe", "deepseek2")
# Tokenizer GGUFs of the engine tree (models/ggml-vocab-<name>.gguf) and the converter's pre-tokenizer
# name for the real model (Granite-3.0: the StarCoder-family BPE llama.cpp calls "refact").
VOCAB = {"granite": "refact", "granitemoe": "refact", "qwen2moe": "qwen2", "deepseek2": "deepseek-llm"}
PRE_TOKENIZER = dict(VOCAB)
HF_ARCHS = {"GraniteForCausalLM": "granite", "GraniteMoeForCausalLM": "granitemoe",
            "Qwen2MoeForCausalLM": "qwen2moe", "DeepseekV2ForCausalLM": "deepseek2"}
# ArchSpec fields only these architectures use (None elsewhere: the spec hashes of the first four
# architectures do not change).
FIELDS = {
    "granite": {"embedding_scale", "residual_scale", "attention_scale", "logit_scale"},
    "qwen2moe": {"n_ff_exp", "n_ff_shexp"},
    "deepseek2": {"n_ff_exp", "n_expert_shared", "n_layer_dense_lead", "q_lora_rank", "kv_lora_rank",
                  "head_dim_v", "rope_dim", "expert_weights_scale", "expert_weights_norm"},
}
FIELDS["granitemoe"] = FIELDS["granite"]
ALL_FIELDS = set().union(*FIELDS.values())
DEEPSEEK2_LITE_LAYERS = 27  # f7cd13301: is_lite = (n_layer == 27)
GATING_SOFTMAX = 1  # LLAMA_EXPERT_GATING_FUNC_TYPE_SOFTMAX, written for scoring_func "softmax"
# Engines of config/config.yaml seen to load and run a tiny twin of each (tests/test_pipeline_moe_families.py);
# the newer llama.cpp-0c1e57098 has all four architectures too but is not checked yet.
ENGINES = {a: ("llama.cpp-f7cd13301",) for a in ARCHS}


def check(s, where: str) -> None:
    """Architecture rules of llama.cpp's loader for the four (s: an ArchSpec)."""
    a = s.arch
    stray = sorted(f for f in ALL_FIELDS - FIELDS.get(a, set()) if getattr(s, f) is not None)
    if stray:
        raise ValueError(f"{where}: {', '.join(stray)} only apply to arch "
                         + " / ".join(sorted(x for x in FIELDS if FIELDS[x] & set(stray))))
    if a not in ARCHS:
        return
    if a == "granite" and s.is_moe:
        raise ValueError(f"{where}: arch granite is dense in llama.cpp; its MoE form is granitemoe")
    if a != "granite" and not s.is_moe:
        raise ValueError(f"{where}: arch {a} needs n_expert > 0")
    if a in ("granite", "granitemoe", "qwen2moe") and s.n_head * s.head_dim != s.n_embd:
        # granite: the converter drops head_dim (n_embd / n_head); qwen2moe: q and o are n_embd x n_embd
        raise ValueError(f"{where}: {a} needs n_head * head_dim == n_embd")
    if a in ("granite", "granitemoe"):
        missing = sorted(f for f in FIELDS["granite"] if getattr(s, f) is None)
        if missing:
            raise ValueError(f"{where}: {a} needs {', '.join(missing)} (llama.cpp reads all four)")
    if a in ("qwen2moe", "deepseek2") and s.tied_embeddings:
        raise ValueError(f"{where}: {a} has a required output matrix in llama.cpp (tied_embeddings: false)")
    if a == "qwen2moe" and (s.n_ff_exp is None or s.n_ff_shexp is None):
        raise ValueError(f"{where}: qwen2moe needs n_ff_exp and n_ff_shexp")
    if a == "deepseek2":
        need = ("n_ff_exp", "n_expert_shared", "n_layer_dense_lead", "kv_lora_rank", "head_dim_v", "rope_dim")
        missing = [f for f in need if getattr(s, f) is None]
        if missing:
            raise ValueError(f"{where}: deepseek2 needs {', '.join(missing)}")
        if s.n_head_kv != s.n_head:
            raise ValueError(f"{where}: deepseek2 (MLA) has n_head_kv == n_head")
        if not 0 < s.rope_dim < s.head_dim:
            raise ValueError(f"{where}: deepseek2 head_dim is qk_nope + qk_rope: rope_dim must be in 1..head_dim-1")
        if not 0 <= s.n_layer_dense_lead < s.n_layer:
            raise ValueError(f"{where}: n_layer_dense_lead must be below n_layer")
        lite = s.n_layer == DEEPSEEK2_LITE_LAYERS
        if lite == bool(s.q_lora_rank):
            raise ValueError(f"{where}: llama.cpp f7cd13301 reads deepseek2 with n_layer == 27 as Lite (no q-LoRA) "
                             f"and any other depth with q_lora_rank > 0")


def _attention_qwen2(s, p: str) -> list[tuple]:
    e, q_out, kv_out = s.n_embd, s.n_head * s.head_dim, s.n_head_kv * s.head_dim
    return [(p + "attn_q.weight", (q_out, e), "F16", "attn_q", False),
            (p + "attn_k.weight", (kv_out, e), "F16", "attn_k", False),
            (p + "attn_v.weight", (kv_out, e), "F16", "attn_v", False),
            (p + "attn_output.weight", (e, q_out), "F16", "attn_output", False),
            (p + "attn_q.bias", (q_out,), "F32", "bias", False),
            (p + "attn_k.bias", (kv_out,), "F32", "bias", False),
            (p + "attn_v.bias", (kv_out,), "F32", "bias", False)]


def _attention_mla(s, p: str) -> list[tuple]:
    e, h, nope = s.n_embd, s.n_head, s.head_dim - s.rope_dim
    t = [(p + "attn_kv_a_norm.weight", (s.kv_lora_rank,), "F32", "norm", False)]
    if s.q_lora_rank:
        t += [(p + "attn_q_a_norm.weight", (s.q_lora_rank,), "F32", "norm", False),
              (p + "attn_q_a.weight", (s.q_lora_rank, e), "F16", "attn_q", False),
              (p + "attn_q_b.weight", (h * s.head_dim, s.q_lora_rank), "F16", "attn_q", False)]
    else:
        t.append((p + "attn_q.weight", (s.n_head_kv * s.head_dim, e), "F16", "attn_q", False))
    # Not kinds attn_k / attn_v: llama-quantize's attn_k/attn_v rules (edgemoe.preflight.tensor_type)
    # match those names only, not attn_kv_a_mqa / attn_kv_b.
    return t + [(p + "attn_kv_a_mqa.weight", (s.kv_lora_rank + s.rope_dim, e), "F16", "attn_q", False),
                (p + "attn_kv_b.weight", (h * (nope + s.head_dim_v), s.kv_lora_rank), "F16", "attn_output", False),
                (p + "attn_output.weight", (e, h * s.head_dim_v), "F16", "attn_output", False)]


def _ffn(p: str, suffix: str, e: int, ff: int, n: int | None = None) -> list[tuple]:
    """gate/down/up of one FFN (n None) or of n stacked experts (`_exps`)."""
    lead, expert = ((n,), True) if n else ((), False)
    return [(f"{p}ffn_gate{suffix}.weight", lead + (ff, e), "F16", "ffn_gate", expert),
            (f"{p}ffn_down{suffix}.weight", lead + (e, ff), "F16", "ffn_down", expert),
            (f"{p}ffn_up{suffix}.weight", lead + (ff, e), "F16", "ffn_up", expert)]


def tensors(s) -> list[tuple]:
    """Every tensor of a qwen2moe or deepseek2 GGUF, in llama.cpp's names (granite and granitemoe
    have the llama layout: edgemoe.architectures builds theirs)."""
    e = s.n_embd
    t = [("token_embd.weight", (s.n_vocab, e), "F16", "embedding", False),
         ("output_norm.weight", (e,), "F32", "norm", False),
         ("output.weight", (s.n_vocab, e), "F16", "output", False)]
    for i in range(s.n_layer):
        p = f"blk.{i}."
        t.append((p + "attn_norm.weight", (e,), "F32", "norm", False))
        t += _attention_qwen2(s, p) if s.arch == "qwen2moe" else _attention_mla(s, p)
        t.append((p + "ffn_norm.weight", (e,), "F32", "norm", False))
        if s.arch == "deepseek2" and i < s.n_layer_dense_lead:
            t += _ffn(p, "", e, s.n_ff)
            continue
        t.append((p + "ffn_gate_inp.weight", (s.n_expert, e), "F32", "router", False))
        t += _ffn(p, "_exps", e, s.n_ff_exp, s.n_expert)
        if s.arch == "qwen2moe":
            # (1, n_embd) as the converter writes Qwen2MoE's shared_expert_gate (not squeezed): F16
            t.append((p + "ffn_gate_inp_shexp.weight", (1, e), "F16", "ffn_gate", False))
            t += _ffn(p, "_shexp", e, s.n_ff_shexp)
        else:
            t += _ffn(p, "_shexp", e, s.n_ff_exp * s.n_expert_shared)
    return t


def metadata(s) -> dict[str, Any]:
    """The architecture keys convert_hf_to_gguf.py adds to the common ones (edgemoe.architectures)."""
    a, md = s.arch, {}
    if a in ("granite", "granitemoe"):  # LlamaModel's two, then GraniteModel's four (the converter's names)
        md.update({f"{a}.vocab_size": s.n_vocab, f"{a}.rope.dimension_count": s.head_dim,
                   f"{a}.attention.scale": float(s.attention_scale), f"{a}.embedding_scale": float(s.embedding_scale),
                   f"{a}.residual_scale": float(s.residual_scale), f"{a}.logit_scale": float(s.logit_scale)})
    if a == "qwen2moe":
        md.update({f"{a}.expert_feed_forward_length": s.n_ff_exp,
                   f"{a}.expert_shared_feed_forward_length": s.n_ff_shexp})
    if a == "deepseek2":
        md.update({f"{a}.leading_dense_block_count": s.n_layer_dense_lead, f"{a}.vocab_size": s.n_vocab})
        if s.q_lora_rank:
            md[f"{a}.attention.q_lora_rank"] = s.q_lora_rank
        md.update({f"{a}.attention.kv_lora_rank": s.kv_lora_rank, f"{a}.attention.key_length": s.head_dim,
                   f"{a}.attention.value_length": s.head_dim_v, f"{a}.expert_feed_forward_length": s.n_ff_exp,
                   f"{a}.expert_shared_count": s.n_expert_shared,
                   f"{a}.expert_weights_scale": float(1.0 if s.expert_weights_scale is None else s.expert_weights_scale),
                   f"{a}.expert_weights_norm": bool(s.expert_weights_norm),
                   f"{a}.expert_gating_func": GATING_SOFTMAX, f"{a}.rope.dimension_count": s.rope_dim})
        rs = s.rope_scaling or {}
        if rs.get("type") == "yarn":
            md.update({f"{a}.rope.scaling.type": "yarn", f"{a}.rope.scaling.factor": float(rs["factor"]),
                       f"{a}.rope.scaling.original_context_length": int(rs["original_context_length"]),
                       f"{a}.rope.scaling.yarn_log_multiplier": float(0.1 * rs["mscale_all_dim"])})
    return md


def spec_from_hf(arch: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The spec keys of these architectures from a Hugging Face config.json (beyond the common ones)."""
    if arch in ("granite", "granitemoe"):
        out = {"embedding_scale": float(cfg["embedding_multiplier"]), "residual_scale": float(cfg["residual_multiplier"]),
               "attention_scale": float(cfg["attention_multiplier"]), "logit_scale": float(cfg["logits_scaling"]),
               "head_dim": cfg["hidden_size"] // cfg["num_attention_heads"],
               "tied_embeddings": bool(cfg.get("tie_word_embeddings", True))}
        if arch == "granitemoe":
            out.update(n_expert=cfg["num_local_experts"], n_expert_used=cfg["num_experts_per_tok"])
        return out
    if arch == "qwen2moe":
        return {"n_expert": cfg["num_experts"], "n_expert_used": cfg["num_experts_per_tok"],
                "n_ff_exp": cfg["moe_intermediate_size"], "n_ff_shexp": cfg["shared_expert_intermediate_size"],
                "tied_embeddings": bool(cfg.get("tie_word_embeddings", False))}
    if arch == "deepseek2":
        out = {"n_expert": cfg["n_routed_experts"], "n_expert_used": cfg["num_experts_per_tok"],
               "n_ff_exp": cfg["moe_intermediate_size"], "n_expert_shared": cfg["n_shared_experts"],
               "n_layer_dense_lead": cfg["first_k_dense_replace"], "kv_lora_rank": cfg["kv_lora_rank"],
               "head_dim": cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"], "head_dim_v": cfg["v_head_dim"],
               "rope_dim": cfg["qk_rope_head_dim"], "expert_weights_scale": float(cfg["routed_scaling_factor"]),
               "expert_weights_norm": bool(cfg.get("norm_topk_prob", False)),
               "tied_embeddings": bool(cfg.get("tie_word_embeddings", False))}
        if cfg.get("q_lora_rank"):
            out["q_lora_rank"] = cfg["q_lora_rank"]
        rs = cfg.get("rope_scaling") or {}
        if rs.get("type") == "yarn":
            out["rope_scaling"] = {"type": "yarn", "factor": float(rs["factor"]),
                                   "original_context_length": rs["original_max_position_embeddings"],
                                   "mscale_all_dim": float(rs["mscale_all_dim"])}
        return out
    return {}
