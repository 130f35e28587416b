"""Quantized shape twins written directly, without an F16 file and llama-quantize.

The engine stays the authority on types: a *probe* GGUF with the twin's exact metadata and tensor
names, each tensor shrunk to two rows (ne[0], the row length, kept: k-quants need ne[0] % 256 == 0),
is quantized by the real llama-quantize. Its type choice (llama_tensor_get_type) looks at tensor
names, ne[0], the layer index parsed from the name, n_layer/n_expert/n_gqa from the metadata and
ggml_n_dims (>= 2 to be quantized) - not at ne[1..3], which are therefore shrunk to min(ne, 2).
The probe's output gives the per-tensor types and the KV metadata llama-quantize writes
(general.quantization_version, general.file_type, in its order). The full file is then streamed
with that metadata, the full shapes and random but valid blocks of each type: per 32-weight block
absmax 2**N(m, s) of the tensor kind's BLOCK_MAGNITUDE, as in the F16 twin; F32/F16 tensors the
quantizer keeps (norms, the MoE router) are exactly the F16 twin's values.

Block scales are never f16 subnormals: a super-block scale d is at least 2**(-14 + v), v ~ U[0, 1)
(so d still spreads over a binade rather than piling up at 2**-14, where Q6_K of a twin would put it).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe.architectures import ArchSpec, TensorSpec
from edgemoe.files import CHUNK, atomic_path
from edgemoe.twins import BLOCK, BLOCK_MAGNITUDE, _write_gguf, twin_chunks, twin_info, twin_metadata

ALIGN = 32  # GGUF_DEFAULT_ALIGNMENT (the twin sets no general.alignment)
CHUNK_WEIGHTS = 1 << 22  # weights per generated chunk (Q4_K: 2.4 MB)
POOL_WEIGHTS = 1 << 23  # unit-absmax Gaussian weights each type's payload pool is made of
MIN_D = 2.0 ** -14  # smallest normal f16
METHOD = "direct (probe type map from llama-quantize)"
# llama-quantize file types whose tensor types are all written here (what the pre-flight counts as
# needing no F16 temporary; the probe decides at run time, falling back to llama-quantize)
DIRECT_QUANTS = frozenset({"Q4_K_M", "Q4_K_S", "Q5_K_M", "Q6_K", "Q8_0", "Q4_0"})


# ---- block formats (ggml-common.h) ---------------------------------------------------------------
@dataclass(frozen=True)
class Fmt:
    qk: int  # weights per block
    size: int  # bytes per block
    kmax: float  # |x| of the extreme integer level: a 32-block's absmax is d * (sub-scale) * kmax
    smax: int  # largest sub-block scale (K-quants), 1 for 32-weight types
    header: tuple[tuple[str, int], ...]  # (field, byte offset) of the f16/scale fields
    payload: int  # byte offset of the quant values
    offset: bool = False  # y = d*q + m (Q4_1/Q5_1) instead of y = d*(q - zero)


FORMATS = {
    "Q4_0": Fmt(32, 18, 8, 1, (("d", 0),), 2),
    "Q4_1": Fmt(32, 20, 7.5, 1, (("d", 0), ("m", 2)), 4, offset=True),
    "Q5_0": Fmt(32, 22, 16, 1, (("d", 0),), 2),
    "Q5_1": Fmt(32, 24, 15.5, 1, (("d", 0), ("m", 2)), 4, offset=True),
    "Q8_0": Fmt(32, 34, 127, 1, (("d", 0),), 2),
    "Q4_K": Fmt(256, 144, 8, 63, (("d", 0), ("dmin", 2), ("scales", 4)), 16),
    "Q5_K": Fmt(256, 176, 16, 63, (("d", 0), ("dmin", 2), ("scales", 4)), 16),
    "Q6_K": Fmt(256, 210, 32, 127, (("scales", 192), ("d", 208)), 0),
}
PLAIN = {"F32": 4, "F16": 2}


def _nibbles(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (lo & 0xF) | ((hi & 0xF) << 4)


def payload(qtype: str, u: np.ndarray) -> np.ndarray:
    """Quant values of unit-absmax weights u [n, qk] packed as the type stores them: [n, bytes]."""
    f = FORMATS[qtype]
    if f.offset:
        q = np.clip(np.rint((u + 1) * f.kmax), 0, 2 * f.kmax).astype(np.uint8)  # 0..15 / 0..31
    else:
        k = int(f.kmax)
        q = (np.clip(np.rint(u * k), -k, k - 1).astype(np.int16) + (0 if qtype == "Q8_0" else k)).astype(np.uint8)
    if qtype == "Q8_0":
        return q  # int8 two's complement
    if f.qk == 32:
        qs = _nibbles(q[:, :16], q[:, 16:])
        if qtype in ("Q4_0", "Q4_1"):
            return qs
        qh = np.bitwise_or.reduce((q.astype(np.uint32) >> 4) << np.arange(32, dtype=np.uint32), axis=1)
        return np.concatenate([qh.astype("<u4")[:, None].view(np.uint8), qs], axis=1)
    if qtype in ("Q4_K", "Q5_K"):  # 4 chunks of 64: low nibbles the first 32, high the next 32
        q4 = q.reshape(-1, 4, 2, 32)
        qs = _nibbles(q4[:, :, 0], q4[:, :, 1]).reshape(-1, 128)
        if qtype == "Q4_K":
            return qs
        bit = (np.arange(8, dtype=np.uint8)).reshape(1, 4, 2, 1)
        qh = np.bitwise_or.reduce(((q4 >> 4) << bit).reshape(-1, 8, 32), axis=1)
        return np.concatenate([qh, qs], axis=1)
    q6 = q.reshape(-1, 2, 4, 32)  # Q6_K: 2 halves of 128, 4 groups of 32
    ql = np.concatenate([_nibbles(q6[:, :, 0], q6[:, :, 2]), _nibbles(q6[:, :, 1], q6[:, :, 3])], axis=2)
    hb = q6 >> 4
    qh = hb[:, :, 0] | (hb[:, :, 1] << 2) | (hb[:, :, 2] << 4) | (hb[:, :, 3] << 6)
    return np.concatenate([ql.reshape(-1, 128), qh.reshape(-1, 64)], axis=1)


def _pack_k_scales(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """8 six-bit scales and mins per super-block, [8, n], into Q4_K/Q5_K's 12 bytes, [12, n]
    (get_scale_min_k4). Rows, not columns: numpy is fast on long contiguous rows."""
    out = np.empty((12, sc.shape[1]), np.uint8)
    out[0:4] = (sc[:4] & 63) | ((sc[4:] >> 4) << 6)
    out[4:8] = (mn[:4] & 63) | ((mn[4:] >> 4) << 6)
    out[8:12] = (sc[4:] & 0xF) | ((mn[4:] & 0xF) << 4)
    return out


def blocks(qtype: str, absmax: np.ndarray, pay: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Blocks [n, size] of a type: payload `pay` (from payload()) with scales such that 32-block j of
    block i has absmax ~ absmax[i, j]. floor: [n] in [1, 2), d >= floor * 2**-14 (no subnormals).
    Computed on [k, n] (absmax.T: a transposed view costs nothing)."""
    f = FORMATS[qtype]
    n = len(pay)
    out = np.empty((n, f.size), np.uint8)
    out[:, f.payload:f.payload + pay.shape[1]] = pay
    a = np.ascontiguousarray(absmax.reshape(n, -1).T, dtype=np.float32)  # [k, n]
    d = np.maximum(a.max(axis=0) * np.float32(1 / (f.kmax * f.smax)), floor.astype(np.float32) * np.float32(MIN_D))
    d = d.astype(np.float16)
    d32 = d.astype(np.float32)
    out16 = out.view(np.uint16)  # every block size is even, every f16 field 2-aligned
    out16[:, dict(f.header)["d"] // 2] = d.view(np.uint16)
    if f.qk == 32 and f.offset:  # y = d*q - kmax*d: q in 0..2*kmax spans [-absmax, absmax]
        out16[:, 1] = (-d32 * np.float32(f.kmax)).astype(np.float16).view(np.uint16)
    elif f.qk == 256:
        sc = np.clip(np.rint(a * (np.float32(1 / f.kmax) / d32)), 1, f.smax)
        off = dict(f.header)["scales"]
        if qtype == "Q6_K":  # int8 scales of 16 weights: two per 32-block
            out[:, off:off + 16] = np.repeat(sc.astype(np.int8), 2, axis=0).view(np.uint8).T
        else:  # y = d*sc*q - dmin*mn with mn = sc, dmin = kmax*d: y = d*sc*(q - kmax)
            sc = sc.astype(np.uint8)
            out[:, off:off + 12] = _pack_k_scales(sc, sc).T
            out16[:, 1] = (d32 * np.float32(f.kmax)).astype(np.float16).view(np.uint16)
    return out


# ---- the probe -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TypeMap:
    """What llama-quantize makes of a twin: KV metadata in order (key, value, type, sub_type) and the
    tensors in file order (name, type name)."""
    quant: str
    kv: tuple
    tensors: tuple[tuple[str, str], ...]
    f16_bytes: int  # size of the F16 twin the probe stands for
    seconds: float

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps([self.quant, list(self.tensors)]).encode()).hexdigest()

    def unsupported(self) -> list[str]:
        return sorted({t for _, t in self.tensors if t not in FORMATS and t not in PLAIN})


def probe_tensors(spec: ArchSpec) -> list[TensorSpec]:
    """The twin's tensors with every dim but the row length shrunk to min(dim, 2)."""
    return [TensorSpec(t.name, tuple(min(d, 2) for d in t.shape[:-1]) + t.shape[-1:], t.dtype, t.kind, t.expert)
            for t in spec.tensors()]


def _header_bytes(path: Path) -> int:
    """Bytes before the first tensor's data (header, KV, tensor infos, alignment padding)."""
    from gguf import GGUFReader

    return int(GGUFReader(path).data_offset)


def probe_type_map(spec: ArchSpec, name: str, seed: int, vocab: dict[str, Any], quant: str, quantize_exe: str,
                   threads: int, work_dir: Path, router_skew: float = 0.0) -> TypeMap:
    """Quantize a probe of the twin with the real llama-quantize and read back what it did."""
    from gguf import GGUFReader, GGUFValueType

    t0 = time.monotonic()
    work_dir = Path(work_dir)
    src, dst = work_dir / f".probe-{quant}.F16.tmp.gguf", work_dir / f".probe-{quant}.tmp.gguf"
    tensors = probe_tensors(spec)

    def chunks_for(i: int, t: TensorSpec):
        if t.kind == "rope":
            yield np.asarray(spec.rope_freqs(), np.float32)
        else:
            rng = np.random.default_rng([seed, i, 0x960BE])
            yield (0.02 * rng.standard_normal(t.n_elements)).astype(np.float16 if t.dtype == "F16" else np.float32)

    try:
        _write_gguf(src, spec.arch, twin_metadata(spec, name, seed, vocab, router_skew), tensors, chunks_for,
                    "probe", progress=False)
        proc = subprocess.run([quantize_exe, str(src), str(dst), quant, str(threads)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"llama-quantize of the probe -> {quant} failed (exit {proc.returncode}):\n"
                               f"{(proc.stdout + proc.stderr)[-3000:]}")
        f16_bytes = _header_bytes(src) + sum(_padded(t.n_elements * PLAIN[t.dtype]) for t in spec.tensors())
        r = GGUFReader(dst)
        kv = []
        for key, field in r.fields.items():
            if key.startswith("GGUF."):
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
            kv.append((key, field.contents(), vtype, sub))
        types = tuple((t.name, t.tensor_type.name) for t in r.tensors)
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
    want = {t.name for t in tensors}
    if {n for n, _ in types} != want or kv[0][0] != "general.architecture":
        raise RuntimeError("llama-quantize's output of the probe does not have the twin's tensors")
    return TypeMap(quant, tuple(kv), types, f16_bytes, time.monotonic() - t0)


def _padded(n: int) -> int:
    return n + (-n) % ALIGN


# ---- the direct writer ---------------------------------------------------------------------------
class _Sink:
    """Sequential writes of exactly files.CHUNK (16 MiB) at multiples of it, as canonical_copy makes
    them (so the page cache holds the file in the same folios), sha256 on the way; a writer and a
    hasher thread work on filled buffers while the next is filled."""

    def __init__(self, f, n_buffers: int = 3):
        self.f, self.buffers, self.cur, self.pos = f, [bytearray(CHUNK) for _ in range(n_buffers)], 0, 0
        self.hash, self.bytes = hashlib.sha256(), 0
        self.writer, self.hasher = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
        self.pending: deque = deque()

    def write(self, data) -> None:
        data = memoryview(data).cast("B")
        self.bytes += len(data)
        while len(data):
            n = min(CHUNK - self.pos, len(data))
            self.buffers[self.cur][self.pos:self.pos + n] = data[:n]
            self.pos += n
            data = data[n:]
            if self.pos == CHUNK:
                self._emit()

    def zeros(self, n: int) -> None:
        if n:
            self.write(bytes(n))

    def _emit(self) -> None:
        buf = memoryview(self.buffers[self.cur])[:self.pos]
        self.pending.append((self.writer.submit(self.f.write, buf), self.hasher.submit(self.hash.update, buf)))
        self.cur, self.pos = (self.cur + 1) % len(self.buffers), 0
        while len(self.pending) >= len(self.buffers):  # the buffer to be filled next must be done with
            for fut in self.pending.popleft():
                fut.result()

    def close(self) -> str:
        if self.pos:
            self._emit()
        while self.pending:
            for fut in self.pending.popleft():
                fut.result()
        self.writer.shutdown()
        self.hasher.shutdown()
        return self.hash.hexdigest()


def _quant_chunks(t: TensorSpec, index: int, seed: int, qtype: str, pool: np.ndarray, normal: np.ndarray):
    """Tensor t as blocks of qtype, CHUNK_WEIGHTS at a time: payload a slice of the type's pool,
    log2(32-block absmax) ~ N(m, s) of the tensor's kind from a slice of a pool of N(0, 1) draws
    (drawing them afresh would be the slowest step)."""
    f = FORMATS[qtype]
    m, s = BLOCK_MAGNITUDE[t.kind]
    if t.shape[-1] % f.qk:
        raise ValueError(f"{t.name}: row length {t.shape[-1]} is not a multiple of {f.qk} ({qtype})")
    rng = np.random.default_rng([seed, index, 0x9A17])
    k = f.qk // BLOCK
    left = t.n_elements // f.qk
    per_chunk = CHUNK_WEIGHTS // f.qk
    while left:
        nb = min(per_chunk, left)
        start = int(rng.integers(0, len(pool) - nb + 1))
        z0 = int(rng.integers(0, len(normal) - k * nb + 1))
        z = normal[z0:z0 + k * nb].reshape(k, nb)
        absmax = np.exp2(z * np.float32(s) + np.float32(m)).T
        floor = np.exp2(rng.random(nb, dtype=np.float32))
        yield blocks(qtype, absmax, pool[start:start + nb], floor)
        left -= nb


def normal_pool(seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 0x9A17, 0]).standard_normal(POOL_WEIGHTS // BLOCK, dtype=np.float32)


def type_pool(seed: int, qtype: str) -> np.ndarray:
    """Payload of POOL_WEIGHTS unit-absmax Gaussian weights (each 32-block's absmax 1) in qtype."""
    f = FORMATS[qtype]
    rng = np.random.default_rng([seed, 0x9A17, f.size])
    u = rng.standard_normal((POOL_WEIGHTS // BLOCK, BLOCK), dtype=np.float32)
    u /= np.abs(u).max(axis=1, keepdims=True)
    return payload(qtype, u.reshape(-1, f.qk))


def write_quantized_twin(spec: ArchSpec, seed: int, type_map: TypeMap, out: Path, router_skew: float = 0.0,
                         progress: bool = True) -> dict[str, Any]:
    """Stream the quantized twin to `out` atomically: type_map's metadata and types, full shapes.
    Returns twin_info's fields and the file's sha256, size and write time."""
    import gguf
    from tqdm import tqdm

    bad = type_map.unsupported()
    if bad:
        raise NotImplementedError(f"direct writing of tensor type(s) {', '.join(bad)} is not implemented")
    t0 = time.monotonic()
    by_name = {t.name: (i, t) for i, t in enumerate(spec.tensors())}
    order = [(by_name[n], typ) for n, typ in type_map.tensors]

    def nbytes(t: TensorSpec, typ: str) -> int:
        if typ in PLAIN:
            return t.n_elements * PLAIN[typ]
        return t.n_elements // FORMATS[typ].qk * FORMATS[typ].size

    with atomic_path(out) as tmp:
        w = gguf.GGUFWriter(tmp, spec.arch)
        for key, value, vtype, sub in type_map.kv[1:]:
            w.add_key_value(key, value, vtype, sub_type=sub)
        for (_, t), typ in order:  # element shape with a non-uint8 dtype: gguf-py takes it as is
            w.add_tensor_info(t.name, t.shape, np.dtype(np.float32), nbytes(t, typ),
                              raw_dtype=gguf.GGMLQuantizationType[typ])
        w.write_header_to_file(tmp)
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        w.close()
        header = tmp.read_bytes()
        plain = twin_chunks(spec, seed, router_skew)
        pools: dict[str, np.ndarray] = {}
        normal = normal_pool(seed)
        total = sum(nbytes(t, typ) for (_, t), typ in order)
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"direct {type_map.quant}", disable=not progress,
                   file=sys.stderr, mininterval=2.0)
        with open(tmp, "wb") as fout:
            sink = _Sink(fout)
            try:
                sink.write(header)
                sink.zeros(_padded(len(header)) - len(header))
                for (i, t), typ in order:
                    if typ in PLAIN:
                        if typ != t.dtype:
                            raise NotImplementedError(f"{t.name}: {t.dtype} in the twin, {typ} after llama-quantize")
                        chunks = plain(i, t)
                    else:
                        if typ not in pools:
                            pools[typ] = type_pool(seed, typ)
                        chunks = _quant_chunks(t, i, seed, typ, pools[typ], normal)
                    n = 0
                    for c in chunks:
                        sink.write(c)
                        n += c.nbytes
                        bar.update(c.nbytes)
                    assert n == nbytes(t, typ), f"{t.name}: wrote {n} bytes, expected {nbytes(t, typ)}"
                    sink.zeros(_padded(n) - n)
            finally:
                sha = sink.close()
            fout.flush()
            os.fsync(fout.fileno())
            size = sink.bytes
        bar.close()
    seconds = time.monotonic() - t0
    return {**twin_info(spec, seed, router_skew), "gguf_sha256": sha, "gguf_bytes": size,
            "write_seconds": round(seconds, 2)}
