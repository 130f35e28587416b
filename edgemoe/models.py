"""Model files for the cells: F16 GGUF -> llama-quantize -> canonical copy + a provenance sidecar."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgemoe.architectures import ArchSpec
from edgemoe.files import atomic_write_json, canonical_copy, sha256_file
from edgemoe.twins import load_vocab, vocab_name, write_twin


def quantize(quantize_exe: str, f16: Path, out: Path, quant: str, threads: int, log) -> None:
    """llama-quantize into a temp file, then the canonical copy to `out`."""
    tmp = out.with_name(f".{out.name}.quantize-tmp")
    try:
        proc = subprocess.run([quantize_exe, str(f16), str(tmp), quant, str(threads)],
                              stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"llama-quantize {f16.name} -> {quant} failed (exit {proc.returncode}); see the log")
        canonical_copy(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def make_twin_ggufs(model_id: str, spec_cfg: dict[str, Any], seed: int, quants: list[str], out_dir: Path,
                    engine_src: Path, quantize_exe: str, threads: int, vocab_cache: Path) -> None:
    spec = ArchSpec.from_config(model_id, spec_cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    f16 = out_dir / "F16.twin-tmp.gguf"  # temporary: deleted once every quant is made
    try:
        t0 = time.monotonic()
        twin = write_twin(spec, model_id, seed, load_vocab(engine_src, vocab_name(spec), vocab_cache), f16)
        write_s = time.monotonic() - t0
        f16_bytes = f16.stat().st_size
        print(f"{model_id}: F16 twin {f16_bytes / 1e9:.2f} GB in {write_s:.1f} s "
              f"({f16_bytes / 1e9 / write_s:.2f} GB/s)", file=sys.stderr)
        for quant in quants:
            out = out_dir / f"{quant}.gguf"
            t1 = time.monotonic()
            if quant == "F16":
                canonical_copy(f16, out)
            else:
                quantize(quantize_exe, f16, out, quant, threads, sys.stderr)
            info = {
                "model": model_id, "family": "moe" if spec.is_moe else "dense", "weights_source": "twin",
                "quant": quant, "gguf_sha256": sha256_file(out), "gguf_bytes": out.stat().st_size,
                **twin, "arch": spec.arch, "f16_bytes": f16_bytes, "f16_write_seconds": round(write_s, 2),
                "quantize_seconds": round(time.monotonic() - t1, 2),
                "written_by": "canonical_copy (16 MiB writes, fsync, rename)",
            }
            atomic_write_json(out_dir / f"{quant}.json", info)
    finally:
        f16.unlink(missing_ok=True)
