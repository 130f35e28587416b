"""Model architectures as data: the GGUF tensors and metadata llama.cpp expects per architecture.

One `ArchSpec` (from a model's `spec:` block in config) gives everything a shape twin needs, and
the derived facts the analysis uses (total and active parameters, KV cache bytes per token).
Shapes follow the convert script's conventions: numpy shape = reversed ggml `ne`, norms, biases,
the router and rope factors in F32, the rest in F16 before quantization.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edgemoe import architectures_moe as families

SUPPORTED_ARCHS = ("olmoe", "llama", "qwen2", "gemma2") + families.ARCHS

# Real tokenizers shipped in the llama.cpp tree (models/ggml-vocab-<name>.gguf) and the
# pre-tokenizer name the real model's GGUF carries.
DEFAULT_VOCAB = {"olmoe": "gpt-neox", "llama": "llama-bpe", "qwen2": "qwen2", "gemma2": "llama-spm",
                 **families.VOCAB}
PRE_TOKENIZER = {"olmoe": "olmo", "llama": "llama-bpe", "qwen2": "qwen2", "gemma2": "default",
                 **families.PRE_TOKENIZER}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # numpy order (reversed ggml ne)
    dtype: str  # "F32" or "F16"
    kind: str  # weight family, for block-magnitude defaults and active-parameter accounting
    expert: bool = False  # stacked expert weights: only n_expert_used of n_expert are read per token

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class ArchSpec:
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    context_length: int
    rope_theta: float
    rms_eps: float
    tied_embeddings: bool
    n_expert: int = 0
    n_expert_used: int = 0
    vocab: str | None = None
    pre_tokenizer: str | None = None  # default: the architecture's (PRE_TOKENIZER)
    rope_scaling: dict[str, Any] | None = None
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None
    sliding_window: int | None = None
    # The MoE families of edgemoe.architectures_moe (None for the others, so that their specs and
    # twin tags stay what they were): expert and shared-expert widths where n_ff is the dense width
    # (qwen2moe, deepseek2), MLA ranks and head dims (head_dim = qk nope + rope), muP scales (granite).
    n_ff_exp: int | None = None
    n_ff_shexp: int | None = None
    n_expert_shared: int | None = None
    n_layer_dense_lead: int | None = None
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    head_dim_v: int | None = None
    rope_dim: int | None = None
    expert_weights_scale: float | None = None
    expert_weights_norm: bool | None = None
    embedding_scale: float | None = None
    residual_scale: float | None = None
    attention_scale: float | None = None
    logit_scale: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, model_id: str, spec: dict[str, Any]) -> "ArchSpec":
        arch = spec.get("arch")
        if arch not in SUPPORTED_ARCHS:
            raise ValueError(f"models.{model_id}.spec.arch: {arch!r} is not one of {SUPPORTED_ARCHS}")
        known = set(cls.__dataclass_fields__) - {"extra"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"models.{model_id}.spec: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        s = cls(**spec)
        s.check(model_id)
        return s

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0

    @property
    def pre_tokenizer_name(self) -> str:
        return self.pre_tokenizer or PRE_TOKENIZER[self.arch]

    def to_config(self) -> dict[str, Any]:
        """The `spec:` block this spec comes from (None fields left out): what a derived model's
        twin job is given, and part of its identity."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "extra"}

    def check(self, model_id: str) -> None:
        where = f"models.{model_id}.spec"
        if self.is_moe and not (0 < self.n_expert_used <= self.n_expert):
            raise ValueError(f"{where}: n_expert_used must be in 1..n_expert")
        if self.arch == "olmoe" and not self.is_moe:
            raise ValueError(f"{where}: arch olmoe needs n_expert > 0")
        if self.arch not in ("olmoe", "llama") + families.ARCHS and self.is_moe:  # granite: families.check
            raise ValueError(f"{where}: arch {self.arch} has no MoE form in llama.cpp")
        if self.arch in ("olmoe", "qwen2") and self.n_head * self.head_dim != self.n_embd:
            # llama.cpp creates q/o as n_embd x n_embd for these archs
            raise ValueError(f"{where}: {self.arch} needs n_head * head_dim == n_embd")
        if self.n_head % self.n_head_kv:
            raise ValueError(f"{where}: n_head must be a multiple of n_head_kv")
        if self.arch == "olmoe" and self.tied_embeddings:
            raise ValueError(f"{where}: olmoe has an untied output matrix in llama.cpp")
        if self.arch == "gemma2" and not self.tied_embeddings:
            raise ValueError(f"{where}: gemma2 always ties the output to token_embd in llama.cpp")
        families.check(self, where)

    # ---- tensors -------------------------------------------------------------------------
    def tensors(self) -> list[TensorSpec]:
        if self.arch in ("qwen2moe", "deepseek2"):
            return [TensorSpec(*row) for row in families.tensors(self)]
        e, ff, hd = self.n_embd, self.n_ff, self.head_dim
        q_out, kv_out = self.n_head * hd, self.n_head_kv * hd
        t = [TensorSpec("token_embd.weight", (self.n_vocab, e), "F16", "embedding")]
        t.append(TensorSpec("output_norm.weight", (e,), "F32", "norm"))
        if not self.tied_embeddings:
            t.append(TensorSpec("output.weight", (self.n_vocab, e), "F16", "output"))
        if self.arch == "llama" and self.rope_scaling and self.rope_scaling.get("type") == "llama3":
            t.append(TensorSpec("rope_freqs.weight", (hd // 2,), "F32", "rope"))
        for i in range(self.n_layer):
            p = f"blk.{i}."
            t.append(TensorSpec(p + "attn_norm.weight", (e,), "F32", "norm"))
            t.append(TensorSpec(p + "attn_q.weight", (q_out, e), "F16", "attn_q"))
            t.append(TensorSpec(p + "attn_k.weight", (kv_out, e), "F16", "attn_k"))
            t.append(TensorSpec(p + "attn_v.weight", (kv_out, e), "F16", "attn_v"))
            t.append(TensorSpec(p + "attn_output.weight", (e, q_out), "F16", "attn_output"))
            if self.arch == "qwen2":
                t.append(TensorSpec(p + "attn_q.bias", (q_out,), "F32", "bias"))
                t.append(TensorSpec(p + "attn_k.bias", (kv_out,), "F32", "bias"))
                t.append(TensorSpec(p + "attn_v.bias", (kv_out,), "F32", "bias"))
            if self.arch == "olmoe":
                t.append(TensorSpec(p + "attn_q_norm.weight", (q_out,), "F32", "norm"))
                t.append(TensorSpec(p + "attn_k_norm.weight", (kv_out,), "F32", "norm"))
            if self.arch == "gemma2":
                t.append(TensorSpec(p + "post_attention_norm.weight", (e,), "F32", "norm"))
            t.append(TensorSpec(p + "ffn_norm.weight", (e,), "F32", "norm"))
            if self.is_moe:
                n = self.n_expert
                t.append(TensorSpec(p + "ffn_gate_inp.weight", (n, e), "F32", "router"))
                t.append(TensorSpec(p + "ffn_gate_exps.weight", (n, ff, e), "F16", "ffn_gate", expert=True))
                t.append(TensorSpec(p + "ffn_down_exps.weight", (n, e, ff), "F16", "ffn_down", expert=True))
                t.append(TensorSpec(p + "ffn_up_exps.weight", (n, ff, e), "F16", "ffn_up", expert=True))
            else:
                t.append(TensorSpec(p + "ffn_gate.weight", (ff, e), "F16", "ffn_gate"))
                t.append(TensorSpec(p + "ffn_down.weight", (e, ff), "F16", "ffn_down"))
                t.append(TensorSpec(p + "ffn_up.weight", (ff, e), "F16", "ffn_up"))
            if self.arch == "gemma2":
                t.append(TensorSpec(p + "post_ffw_norm.weight", (e,), "F32", "norm"))
        return t

    # ---- derived facts -------------------------------------------------------------------
    def total_params(self) -> int:
        """What llama-bench reports as model_n_params (every tensor in the GGUF)."""
        return sum(t.n_elements for t in self.tensors())

    def active_params(self) -> int:
        """Weights touched per generated token: all but the unused experts' share.

        The token embedding is a row lookup, but we count it like llama.cpp's parameter count
        does (and like the study's "1.3 B active"), so active == total for dense models."""
        total = 0
        for t in self.tensors():
            if t.expert:
                total += t.n_elements * self.n_expert_used // self.n_expert
            else:
                total += t.n_elements
        return total

    def kv_bytes_per_token(self, bytes_per_element: float = 2.0) -> int:
        """K and V of every layer (deepseek2 at f7cd13301: the expanded per-head K of head_dim and V
        of head_dim_v, not the compressed latent)."""
        d_v = self.head_dim_v or self.head_dim
        return int(self.n_layer * self.n_head_kv * (self.head_dim + d_v) * bytes_per_element)

    def gguf_metadata(self, name: str) -> dict[str, Any]:
        """Architecture keys as the convert script writes them (key -> python value).

        Typed writing happens in twins.py; float values are float32, counts uint32."""
        a = self.arch
        md: dict[str, Any] = {
            "general.architecture": a,
            "general.name": name,
            f"{a}.context_length": self.context_length,
            f"{a}.embedding_length": self.n_embd,
            f"{a}.block_count": self.n_layer,
            f"{a}.feed_forward_length": self.n_ff,
            f"{a}.attention.head_count": self.n_head,
            f"{a}.attention.head_count_kv": self.n_head_kv,
            f"{a}.attention.layer_norm_rms_epsilon": float(self.rms_eps),
            f"{a}.rope.freq_base": float(self.rope_theta),
        }
        if a in ("llama",):
            md[f"{a}.rope.dimension_count"] = self.head_dim
            md[f"{a}.vocab_size"] = self.n_vocab
        if a == "gemma2":
            md[f"{a}.attention.key_length"] = self.head_dim
            md[f"{a}.attention.value_length"] = self.head_dim
            if self.attn_logit_softcap is not None:
                md[f"{a}.attn_logit_softcapping"] = float(self.attn_logit_softcap)
            if self.final_logit_softcap is not None:
                md[f"{a}.final_logit_softcapping"] = float(self.final_logit_softcap)
            if self.sliding_window is not None:
                md[f"{a}.attention.sliding_window"] = self.sliding_window
        if self.is_moe:
            md[f"{a}.expert_count"] = self.n_expert
            md[f"{a}.expert_used_count"] = self.n_expert_used
        md.update(families.metadata(self))
        return md

    def rope_freqs(self) -> "list[float]":
        """Llama-3 rope scaling factors, computed exactly as the convert script does."""
        import math

        rs = self.rope_scaling or {}
        factor = rs.get("factor", 8.0)
        low = rs.get("low_freq_factor", 1.0)
        high = rs.get("high_freq_factor", 4.0)
        old_ctx = rs.get("original_context_length", 8192)
        low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
        out = []
        for i in range(0, self.head_dim, 2):
            freq = 1.0 / (self.rope_theta ** (i / self.head_dim))
            wavelen = 2 * math.pi / freq
            if wavelen < high_wavelen:
                out.append(1.0)
            elif wavelen > low_wavelen:
                out.append(factor)
            else:
                smooth = (old_ctx / wavelen - low) / (high - low)
                out.append(1 / ((1 - smooth) / factor + smooth))
        return out


HF_ARCHS = {"OlmoeForCausalLM": "olmoe", "LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2",
            "Gemma2ForCausalLM": "gemma2", **families.HF_ARCHS}


def spec_from_hf_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A model registry `spec:` from a Hugging Face config.json (what a user adds a model with)."""
    hf_arch = (cfg.get("architectures") or ["?"])[0]
    if hf_arch not in HF_ARCHS:
        raise ValueError(f"config.json architecture {hf_arch!r} is not one of {sorted(HF_ARCHS)}")
    arch = HF_ARCHS[hf_arch]
    n_head = cfg["num_attention_heads"]
    spec: dict[str, Any] = {
        "arch": arch, "n_layer": cfg["num_hidden_layers"], "n_embd": cfg["hidden_size"], "n_head": n_head,
        "n_head_kv": cfg.get("num_key_value_heads", n_head),
        "head_dim": cfg.get("head_dim") or cfg["hidden_size"] // n_head,
        "n_ff": cfg["intermediate_size"], "n_vocab": cfg["vocab_size"],
        "context_length": cfg.get("max_position_embeddings", 4096),
        "rope_theta": float(cfg.get("rope_theta", 10000.0)), "rms_eps": float(cfg.get("rms_norm_eps", 1e-6)),
        "tied_embeddings": bool(cfg.get("tie_word_embeddings", arch != "olmoe")),
    }
    if arch == "olmoe":
        spec.update(n_expert=cfg["num_experts"], n_expert_used=cfg["num_experts_per_tok"], tied_embeddings=False)
    rs = cfg.get("rope_scaling") or {}
    if arch == "llama" and rs.get("rope_type", rs.get("type")) == "llama3":
        spec["rope_scaling"] = {"type": "llama3", "factor": float(rs["factor"]),
                                "low_freq_factor": float(rs["low_freq_factor"]),
                                "high_freq_factor": float(rs["high_freq_factor"]),
                                "original_context_length": rs["original_max_position_embeddings"]}
    if arch == "gemma2":
        spec.update(attn_logit_softcap=cfg.get("attn_logit_softcapping"),
                    final_logit_softcap=cfg.get("final_logit_softcapping"),
                    sliding_window=cfg.get("sliding_window"), tied_embeddings=True)
    spec.update(families.spec_from_hf(arch, cfg))
    return spec
