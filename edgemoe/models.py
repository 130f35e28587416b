"""Model files for the cells: an F16 GGUF (shape twin, converted HF checkpoint or a local file)
-> llama-quantize to each configured type -> canonical copy + a provenance sidecar per file.

The F16 is temporary: made, quantized to every type and deleted in one job, so that at most one
model's F16 is on disk at a time. A job killed with SIGKILL cannot delete its temporaries; the
job that reruns it removes them first. Files the pipeline did not write (a local GGUF or
checkpoint, the convert script's output) are checked before use (edgemoe.modelcheck).
A shape twin's quants are written directly where they can be (edgemoe.twins_quantized: the types
llama-quantize chooses, from a small probe of the twin), without an F16 and llama-quantize.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgemoe.architectures import ArchSpec
from edgemoe.counterfactuals import derived_from, ffn_facts
from edgemoe.files import atomic_write_json, canonical_copy, sha256_file
from edgemoe.modelcheck import ModelFileError, check_checkpoint, check_gguf
from edgemoe.twins import load_vocab, vocab_name, write_twin
from edgemoe.twins_quantized import METHOD as DIRECT_METHOD
from edgemoe.twins_quantized import probe_type_map, write_quantized_twin


def stale_temporaries(out_dir: Path | str) -> list[Path]:
    """What a killed model job leaves in its folder: the F16, quantize temps, atomic-write temps
    (dot-names with "tmp") and the convert script's shadow folder."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir()
                  if p.name == "F16.tmp.gguf" or (p.name.startswith(".") and ("tmp" in p.name or
                                                                               p.name.startswith(".convert-src-"))))


def _start(out_dir: Path) -> None:
    """The model's folder, without what an interrupted job left there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in stale_temporaries(out_dir):
        print(f"removing {p}, left by an interrupted run", file=sys.stderr, flush=True)
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def quantize(quantize_exe: str, f16: Path, out: Path, quant: str, threads: int, log) -> None:
    """llama-quantize into `out` (a temp file the caller copies into place)."""
    proc = subprocess.run([quantize_exe, str(f16), str(out), quant, str(threads)], stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        out.unlink(missing_ok=True)
        raise RuntimeError(f"llama-quantize {f16.name} -> {quant} failed (exit {proc.returncode}); see the log")


def quantize_all(f16: Path, out_dir: Path, quants: list[str], quantize_exe: str, threads: int,
                 provenance: dict[str, Any], f16_is_temporary: bool = True) -> None:
    """Every configured quant of one F16 GGUF, each with its sidecar JSON.

    All quants are made first and the F16 deleted before the canonical copies, so the peak disk
    use is F16 + the quantized files (OLMoE at Q4_K_M: 13.8 + 4.2 GB), not F16 + two copies."""
    tmps: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    try:
        for quant in quants:
            t0 = time.monotonic()
            if quant == "F16":
                tmps[quant] = f16
            else:
                tmps[quant] = out_dir / f".{quant}.quantize-tmp.gguf"
                quantize(quantize_exe, f16, tmps[quant], quant, threads, sys.stderr)
            seconds[quant] = round(time.monotonic() - t0, 2)
        if f16_is_temporary and "F16" not in quants:
            f16.unlink(missing_ok=True)
        for quant, tmp in tmps.items():
            out = out_dir / f"{quant}.gguf"
            canonical_copy(tmp, out)
            if tmp != f16 or f16_is_temporary:
                tmp.unlink(missing_ok=True)
            atomic_write_json(out_dir / f"{quant}.json", {
                **provenance, "quant": quant, "gguf_sha256": sha256_file(out), "gguf_bytes": out.stat().st_size,
                "quantize_seconds": seconds[quant], "written_by": "canonical_copy (16 MiB writes, fsync, rename)",
                "quantize_method": "llama-quantize" if quant != "F16" else "none (the F16 itself)",
            })
    finally:
        for tmp in tmps.values():
            if tmp != f16:
                tmp.unlink(missing_ok=True)


def _base(model_id: str, spec: ArchSpec, weights_source: str) -> dict[str, Any]:
    return {"model": model_id, "family": "moe" if spec.is_moe else "dense", "weights_source": weights_source,
            "params_total": spec.total_params(), "params_active": spec.active_params(),
            "kv_bytes_per_token": spec.kv_bytes_per_token(), **ffn_facts(spec, derived_from(model_id))}


def make_twin_ggufs(model_id: str, spec_cfg: dict[str, Any], seed: int, quants: list[str], out_dir: Path,
                    engine_src: Path, quantize_exe: str, threads: int, vocab_cache: Path,
                    router_skew: float = 0.0) -> None:
    """Every configured quant of a shape twin. A quant whose tensor types (what llama-quantize makes
    of a small probe of the twin, edgemoe.twins_quantized) can all be written directly is written
    directly; the others, and F16, come from the F16 twin (written once) and llama-quantize."""
    spec = ArchSpec.from_config(model_id, spec_cfg)
    _start(out_dir)
    f16 = out_dir / "F16.tmp.gguf"
    try:
        vocab = load_vocab(engine_src, vocab_name(spec), vocab_cache)
        base = _base(model_id, spec, "twin")
        via_f16 = [q for q in quants if q == "F16"]
        for quant in quants:
            if quant == "F16":
                continue
            type_map = probe_type_map(spec, model_id, seed, vocab, quant, quantize_exe, threads, out_dir,
                                      router_skew=router_skew)
            bad = type_map.unsupported()
            if bad:
                print(f"{model_id} {quant}: tensor types {bad} cannot be written directly: llama-quantize of the F16",
                      file=sys.stderr, flush=True)
                via_f16.append(quant)
                continue
            out = out_dir / f"{quant}.gguf"
            info = write_quantized_twin(spec, seed, type_map, out, router_skew=router_skew)
            print(f"{model_id}: {quant} twin {info['gguf_bytes'] / 1e9:.2f} GB written directly in "
                  f"{info['write_seconds']:.1f} s ({info['gguf_bytes'] / 1e6 / info['write_seconds']:.0f} MB/s)",
                  file=sys.stderr, flush=True)
            atomic_write_json(out_dir / f"{quant}.json", {
                **base, **{k: v for k, v in info.items() if k != "write_seconds"}, "quant": quant,
                "f16_bytes": type_map.f16_bytes, "f16_write_seconds": None,
                "quantize_seconds": info["write_seconds"], "probe_seconds": round(type_map.seconds, 2),
                "probe_type_map_sha256": type_map.sha256, "quantize_method": DIRECT_METHOD,
                "written_by": "edgemoe.twins_quantized (16 MiB writes, fsync, rename)",
            })
        if not via_f16:
            return
        t0 = time.monotonic()
        twin = write_twin(spec, model_id, seed, vocab, f16, router_skew=router_skew)
        write_s = time.monotonic() - t0
        size = f16.stat().st_size
        print(f"{model_id}: F16 twin {size / 1e9:.2f} GB written in {write_s:.1f} s "
              f"({size / 1e9 / write_s:.2f} GB/s)", file=sys.stderr, flush=True)
        quantize_all(f16, out_dir, [q for q in quants if q in via_f16], quantize_exe, threads, {
            **base, **twin, "f16_bytes": size, "f16_write_seconds": round(write_s, 2)})
    finally:
        f16.unlink(missing_ok=True)


def make_converted_ggufs(model_id: str, spec_cfg: dict[str, Any], weights_source: str, hf_dir: Path,
                         download: dict[str, Any] | None, quants: list[str], out_dir: Path, engine_src: Path,
                         quantize_exe: str, threads: int) -> None:
    """A Hugging Face checkpoint (downloaded or local) converted by the pinned engine's own script."""
    from edgemoe.convert import convert_to_gguf

    spec = ArchSpec.from_config(model_id, spec_cfg)
    check_checkpoint(hf_dir)
    _start(out_dir)
    f16 = out_dir / "F16.tmp.gguf"
    try:
        conv = convert_to_gguf(engine_src, hf_dir, f16, "f16")
        check_gguf(f16, engine_src)
        print(f"{model_id}: converted in {conv['seconds']:.1f} s", file=sys.stderr, flush=True)
        provenance = {**_base(model_id, spec, weights_source), "convert_seconds": round(conv["seconds"], 2),
                      "convert_dropped_config_keys": conv.get("config_dropped_keys")}
        if download:
            provenance.update(hf_repo=download["repo_id"], hf_revision=download["commit"],
                              hf_files={p: f["sha256"] for p, f in download["files"].items()})
        else:
            provenance.update(local_path=str(hf_dir))
        quantize_all(f16, out_dir, quants, quantize_exe, threads, provenance)
    finally:
        f16.unlink(missing_ok=True)


def make_local_gguf(model_id: str, spec_cfg: dict[str, Any], gguf: Path, quants: list[str], out_dir: Path,
                    quantize_exe: str, threads: int, engine_src: Path | None = None) -> None:
    """A GGUF the user has: F16/BF16/F32 are quantized like any other; a quantized file is refused
    (every quant is made the same way). Checked first: header, tensor data, the engine's types."""
    spec = ArchSpec.from_config(model_id, spec_cfg)
    header = check_gguf(gguf, engine_src)
    ftype = header.file_type
    if ftype is None and all(t.type_id in (0, 1, 30) for t in header.tensors):
        ftype = 1  # no file type in the header, but every tensor is F32, F16 or BF16
    if ftype not in (0, 1, 32):  # ALL_F32, MOSTLY_F16, MOSTLY_BF16
        raise ModelFileError(gguf, f"already quantized (GGUF file type {ftype})",
                             f"set models.{model_id}.local to an F16/BF16 GGUF or a Hugging Face checkpoint folder, "
                             "so that every quant is made the same way")
    _start(out_dir)
    provenance = {**_base(model_id, spec, "local"), "local_path": str(gguf), "local_sha256": sha256_file(gguf)}
    quantize_all(gguf, out_dir, quants, quantize_exe, threads, provenance, f16_is_temporary=False)
