"""Shape twins: GGUF files with a real model's architecture, tensor names, shapes and metadata,
and random weights from a recorded seed.

llama.cpp does the same work whatever the weight values (llama-bench feeds random token ids and
never samples), with two known exceptions that we model rather than ignore:
- which experts an MoE router picks depends on the router weights;
- on x86 the CPU backend converts fp16 block scales through a lookup table, so the spread of
  block magnitudes changes cache behaviour. Each 32-weight block's absmax is therefore drawn as
  2**N(m, s) with per-tensor-kind (m, s) resembling trained models (engine-notes, last section).

Tensors are streamed to disk chunk by chunk: peak memory is one chunk, not the model.
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgemoe.architectures import DEFAULT_VOCAB, ArchSpec, TensorSpec
from edgemoe.files import atomic_path

BLOCK = 32  # weights per quantization block (Q8_0/Q5_0/K-quant sub-block)
CHUNK_BLOCKS = 1 << 16  # 2M weights per write
POOL_BLOCKS = 1 << 17  # shared pool of unit-absmax blocks, 4M weights: a chunk is a slice of it (no copy)
# Bump when the values a seed gives change: it is part of a twin's tag, so old files are not reused.
GENERATOR_VERSION = 4  # 4: quantized twins written directly (twins_quantized)

# log2(block absmax) ~ N(m, s) per tensor kind: rough values for trained 1-3 B models
# (trained tensors spread block magnitudes over several binades: s of 0.35-1.1).
BLOCK_MAGNITUDE = {
    "embedding": (-4.0, 0.6),
    "output": (-4.0, 0.5),
    "attn_q": (-3.5, 0.7),
    "attn_k": (-3.5, 0.7),
    "attn_v": (-4.5, 0.5),
    "attn_output": (-4.5, 0.5),
    "ffn_gate": (-4.5, 0.4),
    "ffn_up": (-4.5, 0.4),
    "ffn_down": (-4.5, 0.45),
    "router": (-3.0, 0.5),
}

TOKEN_TYPE_UNUSED = 5


# ---- vocabulary ---------------------------------------------------------------------------------
def load_vocab(engine_src: Path, name: str, cache_dir: Path) -> dict[str, Any]:
    """Tokenizer fields of the tree's models/ggml-vocab-<name>.gguf, cached as JSON (reading
    merges through GGUFReader is slow)."""
    cache = Path(cache_dir) / f"{name}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    from gguf import GGUFReader

    path = Path(engine_src) / "models" / f"ggml-vocab-{name}.gguf"
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary {name!r}: {path} not found in the engine tree")
    r = GGUFReader(path)
    vocab = {k: r.fields[k].contents() for k in r.fields if k.startswith("tokenizer.")}
    with atomic_path(cache) as tmp:
        tmp.write_text(json.dumps(vocab))
    return vocab


def fit_vocab(vocab: dict[str, Any], n_vocab: int, pre_tokenizer: str) -> dict[str, Any]:
    """Pad (unused tokens) or truncate the vocabulary to the model's size; set its pre-tokenizer."""
    v = dict(vocab)
    tokens = list(v["tokenizer.ggml.tokens"])
    types = list(v["tokenizer.ggml.token_type"])
    scores = list(v.get("tokenizer.ggml.scores", [])) or None
    n = len(tokens)
    if n_vocab < n:
        tokens, types = tokens[:n_vocab], types[:n_vocab]
        scores = scores[:n_vocab] if scores else None
    else:
        tokens += [f"[PAD{i}]" for i in range(n, n_vocab)]
        types += [TOKEN_TYPE_UNUSED] * (n_vocab - n)
        if scores:
            scores += [-1e4] * (n_vocab - n)
    v["tokenizer.ggml.tokens"], v["tokenizer.ggml.token_type"] = tokens, types
    if scores:
        v["tokenizer.ggml.scores"] = scores
    for k in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
              "tokenizer.ggml.padding_token_id"):
        if k in v and v[k] >= n_vocab:
            v[k] = 0
    v["tokenizer.ggml.pre"] = pre_tokenizer
    v.pop("tokenizer.chat_template", None)
    return v


# ---- weights ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pool:
    """Gaussian blocks, [POOL_BLOCKS, 32], that chunks of every tensor are slices of.

    unit: float32, each block's absmax 1. bits: the same blocks as float16 bit patterns, block b
    scaled by 2**frac[b] (frac uniform in [0, 1)) and with magnitudes below 2**-8 raised to it, so
    that adding k << 10 multiplies a block by 2**k exactly (the exponent field stays in range for
    -6 <= k <= 14): the fast path of F16 weights (tensor_chunks)."""
    unit: np.ndarray
    bits: np.ndarray
    frac: np.ndarray


def _unit_pool(seed: int) -> Pool:
    rng = np.random.default_rng([seed, 0x7017])
    unit = rng.standard_normal((POOL_BLOCKS, BLOCK), dtype=np.float32)
    unit /= np.abs(unit).max(axis=1, keepdims=True)
    frac = rng.random(POOL_BLOCKS)
    scaled = unit * np.exp2(frac).astype(np.float32)[:, None]
    scaled = np.where(np.abs(scaled) < 2.0**-8, np.copysign(np.float32(2.0**-8), scaled), scaled)
    return Pool(unit, scaled.astype(np.float16).view(np.uint16), frac)


def _exponent_path(m: float, s: float) -> bool:
    """Whether log2(absmax) ~ N(m, s) fits the exponent-shift path: s at least the spread its integer
    shifts add (sqrt(1/12), compensated below), and the shifts within [-6, 14] but for ~0.1% of blocks."""
    return s >= 0.3 and m - 3.1 * s >= -6.5 and m + 3.1 * s <= 13.5


def tensor_chunks(t: TensorSpec, index: int, seed: int, pool: np.ndarray, magnitude: tuple[float, float] | None,
                  fixed: np.ndarray | None = None, row_scale: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """The tensor's values, in row-major chunks of its final dtype.

    magnitude: (m, s) of log2(32-block absmax) for weight matrices; fixed: exact values (rope
    factors); row_scale: a factor per row of a 2-D tensor (the MoE router skew)."""
    rng = np.random.default_rng([seed, index])
    n = t.n_elements
    if fixed is not None:
        yield np.asarray(fixed, dtype=np.float32)
        return
    if t.kind == "norm":
        yield (1.0 + 0.05 * rng.standard_normal(n)).astype(np.float32)
        return
    if t.kind == "bias":
        yield (0.02 * rng.standard_normal(n)).astype(np.float32)
        return
    m, s = magnitude if magnitude is not None else BLOCK_MAGNITUDE[t.kind]
    dtype = np.float16 if t.dtype == "F16" else np.float32
    assert n % BLOCK == 0, f"{t.name}: {n} elements is not a multiple of {BLOCK}"
    blocks_left = n // BLOCK
    fast = dtype == np.float16 and row_scale is None and _exponent_path(m, s)
    while blocks_left:
        nb = min(CHUNK_BLOCKS, blocks_left)
        start = int(rng.integers(0, POOL_BLOCKS - nb + 1))
        if fast:
            # Block b's log2(absmax) is frac[b] + k with k = rint(x - frac[b]), x ~ N(m, s'): that is x
            # plus a uniform rounding error of variance 1/12, so s' = sqrt(s^2 - 1/12) gives spread s.
            x = rng.normal(m, np.sqrt(s * s - 1 / 12), size=nb)
            k = np.clip(np.rint(x - pool.frac[start:start + nb]), -6, 14).astype(np.int16)
            shift = (k.astype(np.uint16) << np.uint16(10))[:, None]  # two's complement: adds k to the exponent
            values = np.add(pool.bits[start:start + nb], shift, dtype=np.uint16).view(np.float16)
        else:
            scale = np.exp2(rng.normal(m, s, size=(nb, 1))).astype(np.float32)
            values = _scaled(pool.unit[start:start + nb], scale, dtype)
            if row_scale is not None:  # small tensors only (one chunk): the router
                values = (values.reshape(len(row_scale), -1) * row_scale[:, None]).astype(dtype)
        yield values.reshape(-1)
        blocks_left -= nb


_COMPUTE = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)


def _scaled(blocks: np.ndarray, scale: np.ndarray, dtype) -> np.ndarray:
    """blocks * scale cast straight into dtype, split over the CPUs (numpy releases the GIL): this
    product is what limits the speed of twin writing."""
    out = np.empty(blocks.shape, dtype)
    bounds = np.linspace(0, len(blocks), (os.cpu_count() or 1) + 1).astype(int)
    parts = [_COMPUTE.submit(np.multiply, blocks[a:b], scale[a:b], out=out[a:b], casting="unsafe")
             for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    for p in parts:
        p.result()
    return out


def router_row_scale(n_expert: int, skew: float) -> np.ndarray | None:
    """Zipf-like router skew: expert e's router row scaled by (e+1)^-skew (normalised to mean 1).
    Larger rows give larger-variance logits, so those experts win top-k more often. 0 = uniform."""
    if not skew:
        return None
    w = (np.arange(1, n_expert + 1, dtype=np.float64)) ** (-skew)
    return (w / w.mean()).astype(np.float32)


def _write_gguf(out: Path, arch: str, add_metadata, tensors: list[TensorSpec], chunks_for, label: str,
                progress: bool) -> None:
    """Stream a GGUF: header, metadata and tensor infos, then each tensor chunk by chunk."""
    import gguf
    from tqdm import tqdm

    with atomic_path(out) as tmp:
        w = gguf.GGUFWriter(tmp, arch)
        add_metadata(w)
        for t in tensors:
            np_dtype = np.dtype(np.float16 if t.dtype == "F16" else np.float32)
            raw = gguf.GGMLQuantizationType.F16 if t.dtype == "F16" else gguf.GGMLQuantizationType.F32
            w.add_tensor_info(t.name, t.shape, np_dtype, t.n_elements * np_dtype.itemsize, raw_dtype=raw)
        w.write_header_to_file(tmp)
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        fout = w.fout[0]
        total = sum(t.n_elements * (2 if t.dtype == "F16" else 4) for t in tensors)
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress, file=sys.stderr,
                   mininterval=2.0)
        # A writer thread writes chunk k while the next is computed (numpy and write() release the GIL).
        with ThreadPoolExecutor(max_workers=1) as writer:
            pending = deque()
            for i, t in enumerate(tensors):
                while pending:  # padding goes after every chunk of the tensor before
                    pending.popleft().result()
                w.write_padding(fout, fout.tell())
                nbytes = 0
                for chunk in chunks_for(i, t):
                    pending.append(writer.submit(fout.write, memoryview(chunk).cast("B")))
                    if len(pending) > 2:
                        pending.popleft().result()
                    nbytes += chunk.nbytes
                    bar.update(chunk.nbytes)
                expected = t.n_elements * (2 if t.dtype == "F16" else 4)
                assert nbytes == expected, f"{t.name}: wrote {nbytes} bytes, expected {expected}"
                while pending:
                    pending.popleft().result()
                w.write_padding(fout, nbytes)
        bar.close()
        fout.flush()
        os.fsync(fout.fileno())
        w.close()


def twin_metadata(spec: ArchSpec, name: str, seed: int, vocab: dict[str, Any], router_skew: float = 0.0):
    """add_metadata(writer) for a twin of `spec` (all of its KV pairs but general.architecture); `vocab`
    as load_vocab returns it. Shared by write_twin and the probe of edgemoe.twins_quantized."""
    import gguf

    vocab = fit_vocab(vocab, spec.n_vocab, spec.pre_tokenizer_name)

    def add_metadata(w) -> None:
        w.add_name(name)
        for k, v in spec.gguf_metadata(name).items():
            if k in ("general.architecture", "general.name"):
                continue
            if isinstance(v, bool):
                w.add_bool(k, v)
            elif isinstance(v, int):
                w.add_uint32(k, v)
            elif isinstance(v, float):
                w.add_float32(k, v)
            else:
                w.add_string(k, v)
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        _add_vocab(w, vocab)
        _add_twin_note(w, seed, router_skew)

    return add_metadata


def twin_chunks(spec: ArchSpec, seed: int, router_skew: float = 0.0):
    """chunks_for(i, t): the values of tensor i of spec.tensors() as write_twin writes them."""
    pool = _unit_pool(seed)
    skew = router_row_scale(spec.n_expert, router_skew) if spec.is_moe else None

    def chunks_for(i: int, t: TensorSpec):
        fixed = np.asarray(spec.rope_freqs()) if t.kind == "rope" else None
        return tensor_chunks(t, i, seed, pool, None, fixed, skew if t.kind == "router" else None)

    return chunks_for


def twin_info(spec: ArchSpec, seed: int, router_skew: float = 0.0) -> dict[str, Any]:
    """The provenance fields of a twin (sidecar JSON)."""
    return {"twin_seed": seed, "twin_router_skew": router_skew,
            "twin_block_magnitude": {k: list(v) for k, v in BLOCK_MAGNITUDE.items()},
            "params_total": spec.total_params(), "params_active": spec.active_params()}


def write_twin(spec: ArchSpec, name: str, seed: int, vocab: dict[str, Any], out: Path,
               progress: bool = True, router_skew: float = 0.0) -> dict[str, Any]:
    """Stream a shape twin (F16 weights, F32 norms) of an architecture spec to `out` atomically."""
    _write_gguf(out, spec.arch, twin_metadata(spec, name, seed, vocab, router_skew), spec.tensors(),
                twin_chunks(spec, seed, router_skew), f"twin {name}", progress)
    return twin_info(spec, seed, router_skew)


def _add_twin_note(w, seed: int, router_skew: float) -> None:
    w.add_string("edgemoe.twin.note", "shape twin: random weights, not a trained model")
    w.add_uint32("edgemoe.twin.seed", seed)
    w.add_float32("edgemoe.twin.router_skew", float(router_skew))


# ---- twin of an existing GGUF -------------------------------------------------------------------
def block_magnitudes(reader, max_blocks: int = 1 << 15) -> dict[str, tuple[float, float]]:
    """(m, s) of log2(32-weight block absmax) per weight matrix of a GGUF, from evenly spaced rows
    (dequantized with gguf-py). Two numbers per tensor: no weights are kept."""
    from gguf.quants import dequantize

    out = {}
    for t in reader.tensors:
        if len(t.shape) < 2 or int(t.n_elements) % BLOCK:
            continue
        data = np.asarray(t.data)
        rows = data.reshape(-1, data.shape[-1])
        blocks_per_row = int(t.shape[0]) // BLOCK
        take = max(1, min(len(rows), max_blocks // max(blocks_per_row, 1)))
        sample = rows[np.linspace(0, len(rows) - 1, take).astype(int)]
        values = dequantize(sample, t.tensor_type).reshape(-1, BLOCK)
        absmax = np.abs(values).max(axis=1)
        logs = np.log2(absmax[absmax > 0])
        out[t.name] = (float(logs.mean()), float(logs.std()))
    return out


def twin_of(real: Path, out: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """An F16 twin of any GGUF: the same metadata, tensor names and shapes, weights drawn with each
    tensor's fitted block-magnitude distribution. Quantize it to the source's types afterwards."""
    import gguf
    from gguf import GGUFReader

    reader = GGUFReader(real)
    arch = reader.fields["general.architecture"].contents()
    fitted = block_magnitudes(reader)
    tensors, fixed = [], {}
    for t in reader.tensors:
        shape = tuple(int(x) for x in reversed(list(t.shape)))
        one_d = len(shape) == 1
        f32 = one_d or t.tensor_type == gguf.GGMLQuantizationType.F32
        kind = ("rope" if "rope" in t.name else "bias" if t.name.endswith(".bias") else "norm") if one_d else "fitted"
        tensors.append(TensorSpec(t.name, shape, "F32" if f32 else "F16", kind))
        if kind == "rope":  # computed from the config, not trained: copied
            fixed[t.name] = np.asarray(t.data, dtype=np.float32)

    def add_metadata(w) -> None:
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(key, field.contents(), vtype, sub_type=sub)
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        _add_twin_note(w, seed, 0.0)
        w.add_string("edgemoe.twin.of", Path(real).name)

    pool = _unit_pool(seed)

    def chunks_for(i: int, t: TensorSpec):
        return tensor_chunks(t, i, seed, pool, fitted.get(t.name, (-4.5, 0.5)), fixed.get(t.name))

    _write_gguf(out, arch, add_metadata, tensors, chunks_for, f"twin of {Path(real).name}", progress)
    ftype = int(reader.fields["general.file_type"].contents()) if "general.file_type" in reader.fields else 1
    return {"twin_seed": seed, "twin_of": str(real), "source_file_type": gguf.LlamaFileType(ftype).name,
            "quant": gguf.LlamaFileType(ftype).name.removeprefix("MOSTLY_").replace("ALL_", ""),
            "source_tensor_types": {t.name: t.tensor_type.name for t in reader.tensors},
            "block_magnitude_fitted": fitted}


def _add_vocab(w, vocab: dict[str, Any]) -> None:
    import gguf

    for k, v in vocab.items():
        if k == "tokenizer.ggml.token_type":
            w.add_array(k, [int(x) for x in v])
        elif k == "tokenizer.ggml.scores":
            w.add_key_value(k, [float(x) for x in v], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT32)
        elif isinstance(v, list):
            w.add_array(k, v)
        elif isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, int):
            w.add_uint32(k, v)
        elif isinstance(v, str):
            w.add_string(k, v)
        else:
            raise TypeError(f"vocab field {k}: unsupported value {type(v)}")


def vocab_name(spec: ArchSpec) -> str:
    return spec.vocab or DEFAULT_VOCAB[spec.arch]
