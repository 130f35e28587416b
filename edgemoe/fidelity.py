"""Twin fidelity: how far to trust shape twins on this device.

A real GGUF and its twin (same metadata, names, shapes and quant types; block magnitudes fitted
per tensor) are both written to their place by the canonical copy, then benchmarked alternately
(the first of each round alternates too), and the paired twin/real tok/s ratio is reported as
every A/B comparison of the project is (edgemoe.paired: median of per-round ratios, the rounds'
distribution-free interval).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edgemoe.cells import CellSpec, run_bench_cell
from edgemoe.files import canonical_copy, sha256_file
from edgemoe.models import quantize
from edgemoe.paired import compare


def spread(block_magnitudes: dict[str, tuple[float, float]]) -> dict[str, float]:
    s = np.array([v[1] for v in block_magnitudes.values()])
    return {"median_s": float(np.median(s)), "min_s": float(s.min()), "max_s": float(s.max()), "tensors": len(s)}


def run_fidelity(real: Path, work: Path, quantize_exe: str, bench_exe: str, build_info: dict[str, Any],
                 device: Any, device_id: str, rounds: int, n_prompt: int, n_gen: int, seed: int,
                 use_mmap: bool, timeout_s: float, lock: Path,
                 engine_src: Path | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from gguf import GGUFReader

    from edgemoe.modelcheck import check_gguf
    from edgemoe.twins import block_magnitudes, twin_of

    check_gguf(real, engine_src)  # fidelity.real is the user's file: whole, and one this engine runs
    work.mkdir(parents=True, exist_ok=True)
    real_copy, twin = work / "real.gguf", work / "twin.gguf"
    canonical_copy(real, real_copy)
    f16 = work / "twin-F16.tmp.gguf"
    try:
        info = twin_of(real_copy, f16, seed, progress=False)
        if info["quant"] in ("F16", "F32"):
            canonical_copy(f16, twin)
        else:
            tmp = work / ".twin.quantize-tmp.gguf"
            quantize(quantize_exe, f16, tmp, info["quant"], device.threads, sys.stderr)
            canonical_copy(tmp, twin)
            tmp.unlink()
    finally:
        f16.unlink(missing_ok=True)
    real_types = info["source_tensor_types"]
    twin_types = {t.name: t.tensor_type.name for t in GGUFReader(twin).tensors}
    mismatched = sorted(n for n in real_types if real_types[n] != twin_types.get(n))

    def cell(which: str, path: Path, k: int) -> list[dict[str, Any]]:
        model_info = {"model": f"fidelity-{which}", "family": "moe" if "_exps" in str(real_types) else "dense",
                      "weights_source": "twin" if which == "twin" else "local", "twin_seed": seed if which == "twin" else None,
                      "params_total": 0, "params_active": 0, "quant": info["quant"],
                      "gguf_sha256": sha256_file(path), "gguf_bytes": path.stat().st_size}
        spec = CellSpec(f"{device_id}/fidelity/{which}/round-{k}", device_id, device.backend, bench_exe, str(path),
                        model_info, build_info, "fidelity", n_prompt, n_gen, 1, device.threads, device.n_gpu_layers,
                        use_mmap, timeout_s, device.memory_ceiling_bytes)
        return run_bench_cell(spec, work / f"{which}-{k}.llama-bench.jsonl", work / f"{which}-{k}.stderr.log", lock)

    records = []
    for k in range(rounds):
        order = [("real", real_copy), ("twin", twin)] if k % 2 == 0 else [("twin", twin), ("real", real_copy)]
        for which, path in order:
            rows = cell(which, path, k)
            for r in rows:
                r["fidelity_round"] = k
            records += rows
    summary: dict[str, Any] = {"real": str(real), "real_sha256": sha256_file(real_copy), "twin_seed": seed,
                               "quant": info["quant"], "rounds": rounds, "n_prompt": n_prompt, "n_gen": n_gen,
                               "tensor_type_mismatches": mismatched,
                               "block_spread_real": spread(info["block_magnitude_fitted"]),
                               "block_spread_twin": spread(block_magnitudes(GGUFReader(twin)))}
    for phase in ("pp", "tg"):
        by = {w: {r["fidelity_round"]: r["tokens_per_s"] for r in records
                  if r["status"] == "ok" and r["phase"] == phase and r["model"] == f"fidelity-{w}"}
              for w in ("real", "twin")}
        ks = sorted(set(by["real"]) & set(by["twin"]))
        rows = pd.DataFrame([{"arm": w, "round": k, "value": by[w][k]} for w in by for k in ks],
                            columns=["arm", "round", "value"])
        est = compare(rows, "twin", "real")
        summary[f"{phase}_twin_over_real"] = {"median": est.value, "lo": est.lo, "hi": est.hi, "pairs": len(ks)}
        summary[f"{phase}_real_tok_s"] = float(np.median([by["real"][k] for k in ks])) if ks else None
        summary[f"{phase}_twin_tok_s"] = float(np.median([by["twin"][k] for k in ks])) if ks else None
    return summary, records
