"""Do the two ways of making a quantized twin decode at the same speed? Bare llama-bench on a
twin written quantized directly (edgemoe.twins_quantized) against the same spec's twin made by
llama-quantize of the F16 (generator 3, the releases before 2026-12-01), paired in rounds
(edgemoe.paired, ABBA order): tensor types and sizes are identical, block values are not.

    python tools/twin_path_ab.py --build results/engine/llama.cpp-f7cd13301/build/linux-cpu/build-info.json \\
        --a results/models/olmoe-1b-7b/<new tag>/Q4_K_M.gguf --b results/models/olmoe-1b-7b/<old tag>/Q4_K_M.gguf

Prints each round and a JSON summary (a/b decode ratio, 95% interval); rows to --out as CSV."""
import argparse
import json
import os
import subprocess

from edgemoe import llamabench
from edgemoe.engine import binary
from edgemoe.paired import Arm, alternate, compare
from edgemoe.process import child_env

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--build", required=True)
ap.add_argument("--a", required=True, help="the direct twin")
ap.add_argument("--b", required=True, help="the llama-quantize twin")
ap.add_argument("--n-gen", type=int, default=32)
ap.add_argument("--repetitions", type=int, default=3)
ap.add_argument("--rounds", type=int, default=12)
ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
ap.add_argument("--out", default="results/twin-path-ab.csv")
a = ap.parse_args()
exe, env = binary(a.build, "llama-bench"), child_env(a.threads)


def arm(name: str, model: str) -> Arm:
    cmd = llamabench.command(exe, model, 0, a.n_gen, a.repetitions, a.threads, 0, True)

    def run(k: int) -> list[float]:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        return [a.n_gen / (ns / 1e9) for row in llamabench.parse(p.stdout) for ns in llamabench.repetitions(row)]

    return Arm(name, run)


rows = alternate([arm("direct", a.a), arm("llama-quantize", a.b)], a.rounds,
                 on_round=lambda k, m: print(f"round {k}: " + ", ".join(f"{n} {v:.2f}" for n, v in m.items()),
                                             flush=True))
rows.to_csv(a.out, index=False)
e = compare(rows, "direct", "llama-quantize")
print(json.dumps({"direct/llama-quantize": [e.value, e.lo, e.hi], "rounds": e.n, "n_gen": a.n_gen,
                  "repetitions": a.repetitions, "a": a.a, "b": a.b}, indent=1))
