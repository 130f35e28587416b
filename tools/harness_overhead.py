"""Does the harness slow the benchmark? Decode tok/s of llama-bench run by the cell harness
(edgemoe.cells.run_measured) against the same llama-bench command run bare, paired in rounds
(edgemoe.paired, ABBA order); optionally a third arm with the old harness's reader beside it
(smaps_rollup every 0.5 s, as cells.run_measured did before 2026-12-01), to show the bias that
reader put in every earlier release.

    python tools/harness_overhead.py --build results/engine/llama.cpp-f7cd13301/build/linux-cpu/build-info.json \\
        --model results/models/olmoe-1b-7b/<tag>/Q4_K_M.gguf --rounds 10 --old

Prints each round and a JSON summary (ratio harness/bare, and old/bare with --old, 95% intervals);
the rows go to --out as CSV.

--interleave N adds the default design's decode cell as an arm: edgemoe-interleave under the
harness, this model decoding in turns of N tokens beside the --with models (each in its own
context, edgemoe/interleave.py), its tok/s against bare llama-bench's for the same model:

    python tools/harness_overhead.py --build <build-info.json> --model <olmoe.gguf> --interleave 8 \\
        --with <llama.gguf> <qwen.gguf> ... --rounds 10"""
import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from edgemoe import llamabench
from edgemoe.process import _file_pmd_mapped, child_env, run_measured
from edgemoe.engine import binary
from edgemoe.paired import Arm, alternate, compare

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--build", required=True)
ap.add_argument("--model", required=True)
ap.add_argument("--n-gen", type=int, default=64)
ap.add_argument("--repetitions", type=int, default=3)
ap.add_argument("--rounds", type=int, default=10)
ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
ap.add_argument("--old", action="store_true", help="add the old harness's smaps_rollup reader as a third arm")
ap.add_argument("--interleave", type=int, help="add the interleaved decode cell as an arm, turns of this many tokens")
ap.add_argument("--with", dest="companions", nargs="*", default=[], help="the other models of the interleaved process")
ap.add_argument("--out", default="results/harness-overhead.csv")
a = ap.parse_args()

exe = binary(a.build, "llama-bench")
cmd = llamabench.command(exe, a.model, 0, a.n_gen, a.repetitions, a.threads, 0, True)
env = child_env(a.threads)


def tok_s(stdout: str) -> list[float]:
    rows = llamabench.parse(stdout)
    return [a.n_gen / (ns / 1e9) for row in rows for ns in llamabench.repetitions(row)]


def bare(k: int) -> list[float]:
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return tok_s(p.stdout)


def harness(k: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        r = run_measured(cmd, timeout_s=1800, env=env, stderr_path=Path(tmp) / "err", result_lines=1)
    if r.exit_code != 0:
        raise SystemExit(f"llama-bench failed under the harness: {r.stderr_tail[-500:]}")
    return tok_s("".join(line for _, line in r.stdout_lines))


def old_harness(k: int) -> list[float]:
    """Bare llama-bench with the old harness's reader beside it: smaps_rollup every 0.5 s."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            _file_pmd_mapped(p.pid)
            time.sleep(0.5)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    out, _ = p.communicate()
    stop.set()
    t.join()
    return tok_s(out)


def interleaved(k: int) -> list[float]:
    """The interleaved decode cell's program under the harness; this model is index 0, turn order
    drawn per round as the rounds design does."""
    from edgemoe import interleave
    from edgemoe.rounds import round_order

    models = [a.model, *a.companions]
    order = round_order(list(range(len(models))), 20250601, k)
    icmd = interleave.command(binary(a.build, interleave.PROGRAM), models, a.n_gen, a.interleave, a.repetitions,
                              order, a.threads, 0, True)
    with tempfile.TemporaryDirectory() as tmp:
        r = run_measured(icmd, timeout_s=1800, env=env, stderr_path=Path(tmp) / "err",
                         result_lines=interleave.expected_lines(len(models), a.n_gen, a.interleave, a.repetitions))
    if r.exit_code != 0:
        raise SystemExit(f"edgemoe-interleave failed under the harness: {r.stderr_tail[-500:]}")
    _, blocks, _ = interleave.parse("".join(line for _, line in r.stdout_lines))
    return [a.n_gen / (sum(b["t_end_ns"] - b["t_start_ns"] for b in blocks if b["model"] == 0 and b["repetition"] == i)
                       / 1e9) for i in range(a.repetitions)]


arms = ([Arm("harness", harness), Arm("bare", bare)] + ([Arm("old-harness", old_harness)] if a.old else [])
        + ([Arm("interleaved", interleaved)] if a.interleave else []))
rows = alternate(arms, a.rounds, on_round=lambda k, m: print(
    f"round {k}: " + ", ".join(f"{n} {v:.2f} tok/s" for n, v in m.items()), flush=True))
Path(a.out).parent.mkdir(parents=True, exist_ok=True)
rows.to_csv(a.out, index=False)
summary = {"model": a.model, "n_gen": a.n_gen, "repetitions": a.repetitions, "rounds": a.rounds}
for num in [arm.name for arm in arms if arm.name != "bare"]:
    e = compare(rows, num, "bare")
    summary[f"{num}/bare"] = {"ratio": e.value, "lo": e.lo, "hi": e.hi, "rounds": e.n}
print(json.dumps(summary, indent=1))
