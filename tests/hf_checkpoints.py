"""Tiny Hugging Face-format checkpoints of the study's four architectures, for offline tests.

Each checkpoint is a folder as the hub serves it: ``config.json``, ``generation_config.json``,
``model.safetensors`` (bf16, random weights from a seed) and tokenizer files. Dimensions are tiny
(hidden 256; 2 layers, Gemma-2 26, see GEMMA2_LAYERS) but keep every weight row a multiple of 256
so llama-quantize can use Q4_K. OLMoE has 8 experts, top-2, expert FFN 256 (note: with exactly 8
experts llama-quantize's Q4_K_M rule puts attn_k/attn_v at q8_0, which the real 64-expert model
does not get).

Tokenizers are real ones: llama.cpp's convert script refuses a BPE tokenizer whose pre-tokenizer
hash it does not know, so each BPE ``tokenizer.json`` is rebuilt from the engine tree's
``models/ggml-vocab-*.gguf`` (gpt-neox for OLMoE, llama-bpe for Llama, qwen2 for Qwen2) with the
pre-tokenizer of the original, and Gemma-2 gets a SentencePiece ``tokenizer.model`` rebuilt from
``ggml-vocab-llama-spm.gguf`` (Gemma's own 256000-piece model is not in the tree). The vocabulary
of a tiny checkpoint is the tokenizer's own (padded where the real model pads: OLMoE to 50304).

The extracted tokenizer files are cached (``EDGEMOE_TEST_CACHE`` or ``~/.cache/edgemoe-tests``),
keyed by the vocab GGUF's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ARCHS",
    "SPECS",
    "build_checkpoint",
    "tokenizer_files",
    "read_gguf_kv",
    "write_safetensors",
    "count_params",
]

ARCHS = ("olmoe", "llama", "qwen2", "gemma2")

# Per architecture: the HF class, the vocab GGUF in the engine tree, the llama.cpp arch name.
SPECS: dict[str, dict[str, Any]] = {
    "olmoe": {"hf_arch": "OlmoeForCausalLM", "vocab": "gpt-neox", "gguf_arch": "olmoe", "vocab_size": 50304},
    "llama": {"hf_arch": "LlamaForCausalLM", "vocab": "llama-bpe", "gguf_arch": "llama", "vocab_size": 128256},
    "qwen2": {"hf_arch": "Qwen2ForCausalLM", "vocab": "qwen2", "gguf_arch": "qwen2", "vocab_size": 151936},
    "gemma2": {"hf_arch": "Gemma2ForCausalLM", "vocab": "llama-spm", "gguf_arch": "gemma2", "vocab_size": 32000},
}

HIDDEN = 256
LAYERS = 2
# llama.cpp f7cd133's gemma2 graph aborts ("fatal error" in build_gemma2) unless the model type is
# 2B/9B/27B, which it derives from the layer count alone: the tiny Gemma-2 keeps the real 26 layers.
GEMMA2_LAYERS = 26

# ---------------------------------------------------------------------------------------------
# GGUF key/value reader (tokenizer arrays only; GGUFReader takes ~20 s on llama-bpe's merges)
# ---------------------------------------------------------------------------------------------

_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_gguf_kv(path: Path) -> dict[str, Any]:
    """Read the key/value section of a GGUF file (v2/v3) into a dict; arrays become lists."""
    data = Path(path).read_bytes()
    if data[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    off = 4

    def unpack(fmt: str):
        nonlocal off
        (v,) = struct.unpack_from("<" + fmt, data, off)
        off += struct.calcsize("<" + fmt)
        return v

    def string() -> str:
        nonlocal off
        n = unpack("Q")
        v = data[off : off + n].decode("utf-8")
        off += n
        return v

    def value(t: int):
        nonlocal off
        if t in _SCALAR:
            return unpack(_SCALAR[t])
        if t == 8:
            return string()
        if t == 9:
            et = unpack("I")
            n = unpack("Q")
            if et == 8:
                return [string() for _ in range(n)]
            if et in _SCALAR:
                dt = np.dtype("<" + _SCALAR[et])
                arr = np.frombuffer(data, dt, n, off)
                off += n * dt.itemsize
                return arr.tolist()
            return [value(et) for _ in range(n)]
        raise ValueError(f"{path}: unknown GGUF value type {t}")

    unpack("I")  # version
    unpack("Q")  # tensor count
    n_kv = unpack("Q")
    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = string()
        kv[key] = value(unpack("I"))
    return kv


# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------

# llama.cpp token types
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _byte_level(add_prefix_space: bool, trim_offsets: bool, use_regex: bool) -> dict:
    return {
        "type": "ByteLevel",
        "add_prefix_space": add_prefix_space,
        "trim_offsets": trim_offsets,
        "use_regex": use_regex,
    }


def _split(pattern: str) -> dict:
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


def _bpe_tokenizer_json(kind: str, kv: dict) -> tuple[dict, list[dict]]:
    """tokenizer.json for a BPE vocab GGUF, laid out like the original model's file."""
    tokens: list[str] = kv["tokenizer.ggml.tokens"]
    types: list[int] = kv["tokenizer.ggml.token_type"]
    merges: list[str] = kv["tokenizer.ggml.merges"]
    vocab: dict[str, int] = {}
    added: list[dict] = []
    for i, (tok, typ) in enumerate(zip(tokens, types)):
        if tok.startswith("[PAD") and tok.endswith("]") and typ in (_USER_DEFINED, _UNUSED):
            continue  # padding made up by an older convert script: not part of the tokenizer
        if typ == _NORMAL:
            vocab[tok] = i
        elif typ in (_CONTROL, _USER_DEFINED):
            if kind in ("gpt-neox", "refact") and typ == _CONTROL:  # refact: StarCoder's vocab holds them too
                # gpt-neox-20b's file keeps <|endoftext|> (0) and <|padding|> (1) in the BPE vocab too;
                # transformers 5 rebuilds GPTNeoXTokenizer from that vocab and would renumber them.
                vocab[tok] = i
            added.append(
                {
                    "id": i,
                    "content": tok,
                    "single_word": False,
                    "lstrip": False,
                    "rstrip": False,
                    "normalized": typ == _USER_DEFINED,
                    "special": typ == _CONTROL,
                }
            )
        else:
            raise ValueError(f"unexpected token type {typ} for token {i} in the {kind} vocab")

    model = {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": kind == "llama-bpe",
        "vocab": vocab,
        "merges": [m.split(" ", 1) for m in merges],
    }
    if kind == "gpt-neox":  # EleutherAI/gpt-neox-20b (OLMo, OLMoE and MPT use this tokenizer)
        normalizer = {"type": "NFC"}
        pre = _byte_level(False, True, True)
        post = _byte_level(False, True, True)
        decoder = _byte_level(False, True, True)
    elif kind == "llama-bpe":  # meta-llama/Llama-3.x
        bos = kv["tokenizer.ggml.bos_token_id"]
        bos_tok = tokens[bos]
        normalizer = None
        pre = {"type": "Sequence", "pretokenizers": [_split(_LLAMA3_SPLIT), _byte_level(False, True, False)]}
        post = {
            "type": "Sequence",
            "processors": [
                _byte_level(True, False, True),
                {
                    "type": "TemplateProcessing",
                    "single": [
                        {"SpecialToken": {"id": bos_tok, "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}},
                    ],
                    "pair": [
                        {"SpecialToken": {"id": bos_tok, "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}},
                        {"SpecialToken": {"id": bos_tok, "type_id": 1}},
                        {"Sequence": {"id": "B", "type_id": 1}},
                    ],
                    "special_tokens": {bos_tok: {"id": bos_tok, "ids": [bos], "tokens": [bos_tok]}},
                },
            ],
        }
        decoder = _byte_level(True, True, True)
    elif kind == "qwen2":  # Qwen/Qwen2.x
        normalizer = {"type": "NFC"}
        pre = {"type": "Sequence", "pretokenizers": [_split(_QWEN2_SPLIT), _byte_level(False, False, False)]}
        post = _byte_level(False, False, False)
        decoder = _byte_level(False, False, False)
    elif kind == "refact":  # smallcloudai/Refact-1_6-base's StarCoder-style BPE (IBM Granite-3.0 hashes the same)
        normalizer = None
        pre = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                     _byte_level(False, True, True)]}
        post = _byte_level(False, True, True)
        decoder = _byte_level(False, True, True)
    else:
        raise ValueError(f"no BPE layout for vocab {kind!r}")
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre,
        "post_processor": post,
        "decoder": decoder,
        "model": model,
    }
    return tj, added


def _added_tokens_decoder(added: list[dict]) -> dict[str, dict]:
    return {
        str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
        for a in added
    }


# --- SentencePiece model (protobuf written by hand: no protobuf dependency) -------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    if n < 0:
        n += 1 << 64
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _pb_field(num: int, wire: int, payload: bytes | int | float) -> bytes:
    key = _varint((num << 3) | wire)
    if wire == 0:
        return key + _varint(int(payload))
    if wire == 5:
        return key + struct.pack("<f", float(payload))
    assert wire == 2
    assert isinstance(payload, bytes)
    return key + _varint(len(payload)) + payload


def _pb_str(num: int, s: str) -> bytes:
    return _pb_field(num, 2, s.encode("utf-8"))


def _spm_model(kv: dict) -> bytes:
    """A SentencePiece ModelProto (BPE, byte fallback) with the pieces of a llama-spm vocab GGUF."""
    tokens: list[str] = kv["tokenizer.ggml.tokens"]
    scores: list[float] = kv["tokenizer.ggml.scores"]
    types: list[int] = kv["tokenizer.ggml.token_type"]
    out = bytearray()
    for tok, score, typ in zip(tokens, scores, types):
        piece = _pb_str(1, tok) + _pb_field(2, 5, score) + _pb_field(3, 0, typ)
        out += _pb_field(1, 2, piece)
    trainer = (
        _pb_field(3, 0, 2)  # model_type BPE
        + _pb_field(4, 0, len(tokens))  # vocab_size
        + _pb_field(35, 0, 1)  # byte_fallback
        + _pb_field(40, 0, kv.get("tokenizer.ggml.unknown_token_id", 0))
        + _pb_field(41, 0, kv.get("tokenizer.ggml.bos_token_id", 1))
        + _pb_field(42, 0, kv.get("tokenizer.ggml.eos_token_id", 2))
        + _pb_field(43, 0, -1)  # pad_id
        + _pb_field(25, 0, 1)  # split_digits
        + _pb_field(22, 0, 1)  # split_by_whitespace
    )
    normalizer = (
        _pb_str(1, "identity")
        + _pb_field(3, 0, 1)  # add_dummy_prefix
        + _pb_field(4, 0, 0)  # remove_extra_whitespaces
        + _pb_field(5, 0, 1)  # escape_whitespaces
    )
    out += _pb_field(2, 2, trainer)
    out += _pb_field(3, 2, normalizer)
    return bytes(out)


def _cache_root() -> Path:
    env = os.environ.get("EDGEMOE_TEST_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgemoe-tests"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenizer_files(kind: str, engine_src: Path, cache_dir: Path | None = None) -> dict[str, bytes]:
    """Tokenizer files (name -> bytes) rebuilt from ``<engine_src>/models/ggml-vocab-<kind>.gguf``.

    BPE kinds give ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``;
    ``llama-spm`` gives ``tokenizer.model`` plus the two JSON files. Results are cached on disk.
    """
    gguf_path = Path(engine_src) / "models" / f"ggml-vocab-{kind}.gguf"
    if not gguf_path.is_file():
        raise FileNotFoundError(f"vocab GGUF not found: {gguf_path}")
    digest = _sha256_file(gguf_path)[:16]
    cache = Path(cache_dir) if cache_dir is not None else _cache_root()
    folder = cache / f"tokenizer-{kind}-{digest}"
    done = folder / ".complete"
    if done.is_file():
        names = json.loads(done.read_text())
        return {n: (folder / n).read_bytes() for n in names}

    kv = read_gguf_kv(gguf_path)
    tokens = kv["tokenizer.ggml.tokens"]
    files: dict[str, Any] = {}
    if kind == "llama-spm":
        files["tokenizer.model"] = _spm_model(kv)
        bos, eos, unk = (tokens[kv[f"tokenizer.ggml.{k}_token_id"]] for k in ("bos", "eos", "unknown"))
        files["tokenizer_config.json"] = {
            "tokenizer_class": "GemmaTokenizer",
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": bos,
            "eos_token": eos,
            "unk_token": unk,
            "pad_token": None,
            "model_max_length": 8192,
            "clean_up_tokenization_spaces": False,
            "sp_model_kwargs": {},
            "spaces_between_special_tokens": False,
        }
        files["special_tokens_map.json"] = {"bos_token": bos, "eos_token": eos, "unk_token": unk}
    else:
        tj, added = _bpe_tokenizer_json(kind, kv)
        files["tokenizer.json"] = tj
        eos = tokens[kv["tokenizer.ggml.eos_token_id"]]
        if kind == "gpt-neox":
            cfg = {
                "tokenizer_class": "GPTNeoXTokenizer",
                "add_bos_token": False,
                "add_eos_token": False,
                "bos_token": None,
                "eos_token": eos,
                "pad_token": "<|padding|>",
                "unk_token": None,
                "model_max_length": 4096,
                "clean_up_tokenization_spaces": True,
            }
            stm = {"eos_token": eos, "pad_token": "<|padding|>"}
        elif kind == "llama-bpe":
            bos = tokens[kv["tokenizer.ggml.bos_token_id"]]
            cfg = {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": bos,
                "eos_token": eos,
                "model_input_names": ["input_ids", "attention_mask"],
                "model_max_length": 131072,
                "clean_up_tokenization_spaces": True,
            }
            stm = {"bos_token": bos, "eos_token": eos}
        elif kind == "refact":
            cfg = {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "bos_token": eos, "eos_token": eos,
                   "unk_token": eos, "pad_token": eos, "model_max_length": 4096, "clean_up_tokenization_spaces": True}
            stm = {"bos_token": eos, "eos_token": eos, "unk_token": eos, "pad_token": eos}
        else:  # qwen2
            cfg = {
                "tokenizer_class": "Qwen2Tokenizer",
                "add_prefix_space": False,
                "bos_token": None,
                "eos_token": eos,
                "pad_token": eos,
                "unk_token": None,
                "errors": "replace",
                "model_max_length": 32768,
                "split_special_tokens": False,
                "clean_up_tokenization_spaces": False,
            }
            stm = {"eos_token": eos, "pad_token": eos}
        cfg["added_tokens_decoder"] = _added_tokens_decoder(added)
        files["tokenizer_config.json"] = cfg
        files["special_tokens_map.json"] = stm

    out: dict[str, bytes] = {}
    for name, content in files.items():
        out[name] = content if isinstance(content, bytes) else (json.dumps(content, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in out.items():
        tmp = folder / f".{name}.tmp{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, folder / name)
    done.write_text(json.dumps(sorted(out)))
    return out


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def _to_bf16(a: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "BF16") -> None:
    """Write a safetensors file (float32 arrays stored as BF16 or F32), with no extra dependency."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        arr = tensors[name]
        raw = (_to_bf16(arr) if dtype == "BF16" else np.ascontiguousarray(arr, dtype="<f4")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def count_params(tensors: dict[str, np.ndarray]) -> int:
    return int(sum(a.size for a in tensors.values()))


def _configs(arch: str, vocab_size: int) -> tuple[dict, dict]:
    """(config.json, generation_config.json) for a tiny model shaped like the real one."""
    if arch == "olmoe":
        cfg = {
            "architectures": ["OlmoeForCausalLM"],
            "model_type": "olmoe",
            "hidden_size": HIDDEN,
            "intermediate_size": 256,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "num_experts": 8,
            "num_experts_per_tok": 2,
            "norm_topk_prob": False,
            "output_router_logits": False,
            "router_aux_loss_coef": 0.01,
            "clip_qkv": None,
            "hidden_act": "silu",
            "max_position_embeddings": 4096,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "rms_norm_eps": 1e-05,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "tie_word_embeddings": False,
            "vocab_size": vocab_size,
            "bos_token_id": None,
            "eos_token_id": 0,
            "pad_token_id": 1,
            "torch_dtype": "bfloat16",
            "use_cache": True,
        }
        gen = {"eos_token_id": 0, "pad_token_id": 1}
    elif arch == "llama":
        cfg = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": HIDDEN,
            "intermediate_size": 512,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "hidden_act": "silu",
            "max_position_embeddings": 131072,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "factor": 32.0,
                "high_freq_factor": 4.0,
                "low_freq_factor": 1.0,
                "original_max_position_embeddings": 8192,
                "rope_type": "llama3",
            },
            "rms_norm_eps": 1e-05,
            "attention_bias": False,
            "mlp_bias": False,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "pretraining_tp": 1,
            "tie_word_embeddings": True,
            "vocab_size": vocab_size,
            "bos_token_id": 128000,
            "eos_token_id": 128001,
            "torch_dtype": "bfloat16",
            "use_cache": True,
        }
        gen = {"bos_token_id": 128000, "eos_token_id": 128001, "do_sample": True, "temperature": 0.6, "top_p": 0.9}
    elif arch == "qwen2":
        cfg = {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_size": HIDDEN,
            "intermediate_size": 512,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "max_position_embeddings": 32768,
            "max_window_layers": LAYERS,
            "use_sliding_window": False,
            "sliding_window": 32768,
            "rope_theta": 1000000.0,
            "rope_scaling": None,
            "rms_norm_eps": 1e-06,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "tie_word_embeddings": True,
            "vocab_size": vocab_size,
            "bos_token_id": 151643,
            "eos_token_id": 151643,
            "torch_dtype": "bfloat16",
            "use_cache": True,
        }
        gen = {"bos_token_id": 151643, "eos_token_id": 151643, "do_sample": False}
    elif arch == "gemma2":
        cfg = {
            "architectures": ["Gemma2ForCausalLM"],
            "model_type": "gemma2",
            "hidden_size": HIDDEN,
            "intermediate_size": 256,
            "num_hidden_layers": GEMMA2_LAYERS,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 256,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 8192,
            "sliding_window": 4096,
            "cache_implementation": "hybrid",
            "attn_logit_softcapping": 50.0,
            "final_logit_softcapping": 30.0,
            "query_pre_attn_scalar": 256,
            "rope_theta": 10000.0,
            "rms_norm_eps": 1e-06,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "tie_word_embeddings": True,
            "vocab_size": vocab_size,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
            "torch_dtype": "bfloat16",
            "use_cache": True,
        }
        gen = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "cache_implementation": "hybrid"}
    else:
        raise ValueError(f"unknown architecture {arch!r}; known: {ARCHS}")
    gen["_from_model_config"] = True
    return cfg, gen


def _weights(arch: str, cfg: dict, seed: int) -> dict[str, np.ndarray]:
    """Random N(0, 0.02) weights (norms N(1, 0.02); Gemma's norms N(0, 0.02): it stores w - 1)."""
    rng = np.random.default_rng(seed)
    d = cfg["hidden_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or d // nh
    ff = cfg["intermediate_size"]
    V = cfg["vocab_size"]
    norm_mean = 0.0 if arch == "gemma2" else 1.0

    def w(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)

    def norm(n: int) -> np.ndarray:
        return np.float32(norm_mean) + w(n)

    t: dict[str, np.ndarray] = {"model.embed_tokens.weight": w(V, d), "model.norm.weight": norm(d)}
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = w(V, d)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = w(nh * hd, d)
        t[p + "self_attn.k_proj.weight"] = w(nkv * hd, d)
        t[p + "self_attn.v_proj.weight"] = w(nkv * hd, d)
        t[p + "self_attn.o_proj.weight"] = w(d, nh * hd)
        t[p + "input_layernorm.weight"] = norm(d)
        t[p + "post_attention_layernorm.weight"] = norm(d)
        if arch == "qwen2":
            t[p + "self_attn.q_proj.bias"] = w(nh * hd)
            t[p + "self_attn.k_proj.bias"] = w(nkv * hd)
            t[p + "self_attn.v_proj.bias"] = w(nkv * hd)
        if arch == "olmoe":
            # QK-norm over the full projection width, as OLMoE does
            t[p + "self_attn.q_norm.weight"] = norm(nh * hd)
            t[p + "self_attn.k_norm.weight"] = norm(nkv * hd)
            t[p + "mlp.gate.weight"] = w(cfg["num_experts"], d)  # router, N(0, 0.02) like the rest
            for e in range(cfg["num_experts"]):
                q = f"{p}mlp.experts.{e}."
                t[q + "gate_proj.weight"] = w(ff, d)
                t[q + "up_proj.weight"] = w(ff, d)
                t[q + "down_proj.weight"] = w(d, ff)
        else:
            t[p + "mlp.gate_proj.weight"] = w(ff, d)
            t[p + "mlp.up_proj.weight"] = w(ff, d)
            t[p + "mlp.down_proj.weight"] = w(d, ff)
        if arch == "gemma2":
            t[p + "pre_feedforward_layernorm.weight"] = norm(d)
            t[p + "post_feedforward_layernorm.weight"] = norm(d)
    return t


def build_checkpoint(
    arch: str,
    out_dir: Path,
    engine_src: Path,
    *,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Write a tiny HF checkpoint of ``arch`` into ``out_dir``.

    Returns ``{"arch", "hf_arch", "gguf_arch", "seed", "router_init", "n_params",
    "gguf_n_params", "files"}`` where ``gguf_n_params`` is the parameter count llama.cpp should
    report for the converted model (Llama adds its ``rope_freqs`` tensor).
    """
    spec = SPECS[arch]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg, gen = _configs(arch, spec["vocab_size"])
    tensors = _weights(arch, cfg, seed)
    write_safetensors(out_dir / "model.safetensors", tensors)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out_dir / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    for name, data in tokenizer_files(spec["vocab"], engine_src, cache_dir).items():
        (out_dir / name).write_bytes(data)
    n_params = count_params(tensors)
    gguf_n_params = n_params
    if arch == "llama":
        gguf_n_params += (cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]) // 2
    return {
        "arch": arch,
        "hf_arch": spec["hf_arch"],
        "gguf_arch": spec["gguf_arch"],
        "seed": seed,
        "router_init": "normal(0, 0.02)" if arch == "olmoe" else None,
        "n_params": n_params,
        "gguf_n_params": gguf_n_params,
        "files": sorted(p.name for p in out_dir.iterdir() if p.is_file()),
    }
