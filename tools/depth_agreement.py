"""Do the two depth methods agree? On an engine that has both (llama-bench -d and edgemoe-profile),
alternate them on one model at one depth, round after round (edgemoe.paired: ABBA order), and
report the paired ratio of decode tok/s (llama-bench / edgemoe-profile) with a 95% interval.

    python tools/depth_agreement.py --build results/engine/llama.cpp-0c1e57098/build/linux-cpu/build-info.json \\
        --model results/models/llama-3.2-1b/<tag>/Q4_K_M.gguf --info <same>.json --depth 1024 --rounds 8

Each run is a real depth cell (edgemoe.depth.run_depth_cell); the records go to --out as JSONL."""
import argparse
import json
import os
import tempfile
from pathlib import Path

from edgemoe.cells import cell_spec
from edgemoe.config import Device
from edgemoe.depth import run_depth_cell
from edgemoe.engine import binary
from edgemoe.files import write_jsonl
from edgemoe.host import total_memory_bytes
from edgemoe.paired import Arm, alternate, compare

ap = argparse.ArgumentParser()
ap.add_argument("--build", required=True)
ap.add_argument("--model", required=True)
ap.add_argument("--info", required=True)
ap.add_argument("--depth", type=int, default=1024)
ap.add_argument("--n-gen", type=int, default=32)
ap.add_argument("--cache-type", default="f16")
ap.add_argument("--rounds", type=int, default=8)
ap.add_argument("--repetitions", type=int, default=3)
ap.add_argument("--out", default="results/depth-agreement.jsonl")
a = ap.parse_args()

tools = {t: binary(a.build, t) for t in ("llama-bench", "edgemoe-profile")}
device = Device("host", "cpu", (), os.cpu_count() or 1, 0, total_memory_bytes(), "none", "none", "this host's CPU")
methods = ["llama-bench", "edgemoe-profile"]
records = []


def arm(method: str, tmp: str) -> Arm:
    """One depth cell of `method` per round; its decode tok/s per repetition."""

    def run(k: int) -> list[float]:
        spec = cell_spec(cell_id=f"agreement/{method}/r{k}", device_id="host", device=device,
                         exe=tools["llama-bench"], gguf=a.model, model_info_path=a.info, build_info_path=a.build,
                         test=f"depth{a.depth}-{method}", n_prompt=a.depth, n_gen=a.n_gen,
                         repetitions=a.repetitions, use_mmap=True, timeout_s=1800)
        out = Path(tmp) / f"{method}-{k}"
        out.mkdir()
        rows = run_depth_cell(spec, method=method, depth=a.depth, cache_type=a.cache_type,
                              repetitions=a.repetitions, tools=tools, out_dir=out,
                              stderr_path=Path(tmp) / f"{method}-{k}.log", lock_path=Path(tmp) / "lock")
        records.extend({**r, "round": k} for r in rows)
        return [r["tokens_per_s"] for r in rows if r.get("phase") == "tg" and r["status"] == "ok"]

    return Arm(method, run)


with tempfile.TemporaryDirectory() as tmp:
    rows = alternate([arm(m, tmp) for m in methods], a.rounds, on_round=lambda k, m: print(
        f"round {k}: " + ", ".join(f"{n} {v:.2f} tok/s" for n, v in m.items()), flush=True))
write_jsonl(a.out, records)
est = compare(rows, "llama-bench", "edgemoe-profile")  # paired by round, distribution-free interval
print(json.dumps({"depth": a.depth, "cache_type": a.cache_type, "rounds": a.rounds, "ratio": est.value,
                  "lo": est.lo, "hi": est.hi}))
