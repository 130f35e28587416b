#!/usr/bin/env python3
"""Cost of the node-timing patch when profiling is off.

Runs two llama-bench binaries of the same llama.cpp commit, one built with the node-timing patch
(profiling off, as llama-bench never enables it) and one unpatched, on the same GGUF, alternating
them for K rounds (order flipped every round: AB, BA, AB, ... so slow drift cancels). Each run is
one llama-bench tg test. Prints, and optionally writes as JSON, the paired ratio patched/unpatched
(tokens per second; edgemoe.paired, the project's one A/B comparison: median of per-round ratios,
distribution-free interval), and the same for the CPU seconds each run used (user+sys from wait4; >1 means the patched build costs
more). On a shared, busy VM the tokens/s ratio is noisy; with -t 1 the CPU-time ratio is a steadier
proxy (it includes the model load, the same in both builds, which dilutes it slightly).

A ratio of 1.0 means no cost; below 1.0 the patched build is slower.

    python tools/profiler_overhead.py --patched <build>/bin/llama-bench --unpatched <build>/bin/llama-bench -m <gguf>
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from edgemoe.paired import Arm, alternate, compare


def run_bench(binary: str, model: str, n_gen: int, reps: int, threads: int, extra: list[str],
              sample_stat: str = "avg") -> tuple[float, float]:
    """One llama-bench tg run; returns tokens/s over its -r samples: llama-bench's own average
    (``avg``), or the ``max`` / ``median`` of ``samples_ts``. ``max`` (best of r) resists bursts of
    CPU contention from neighbours on a shared VM. Output goes to a file (no pipe: SIGPIPE).

    Also returns the run's CPU seconds (user+sys, from wait4; includes model load): with -t 1 this
    is a proxy that time-slicing by other processes barely changes."""
    cmd = [binary, "-m", model, "-p", "0", "-n", str(n_gen), "-r", str(reps), "-t", str(threads), "-o", "json", *extra]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        cpu_s = ru.ru_utime + ru.ru_stime
        out.seek(0)
        text = out.read()
        if rc != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} exited {rc}: {err.read()[-2000:]}")
    recs = json.loads(text)
    tg = [r for r in recs if int(r.get("n_gen", 0)) > 0 and int(r.get("n_prompt", 0)) == 0]
    if len(tg) != 1:
        raise RuntimeError(f"expected one tg record from {binary}, got {len(tg)}")
    if sample_stat == "avg":
        return float(tg[0]["avg_ts"]), cpu_s
    samples = np.asarray(tg[0]["samples_ts"], dtype=float)
    return float(samples.max() if sample_stat == "max" else np.median(samples)), cpu_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patched", required=True, help="llama-bench built with the node-timing patch")
    ap.add_argument("--unpatched", required=True, help="llama-bench of the same commit without the patch")
    ap.add_argument("-m", "--model", required=True, help="GGUF model")
    ap.add_argument("-k", "--rounds", type=int, default=10, help="alternation rounds (pairs), default 10")
    ap.add_argument("-n", "--n-gen", type=int, default=32, help="tg tokens per llama-bench run, default 32")
    ap.add_argument("-r", "--reps", type=int, default=1, help="llama-bench -r per run, default 1")
    ap.add_argument("-t", "--threads", type=int, default=2, help="llama-bench -t, default 2")
    ap.add_argument("--sample-stat", choices=("avg", "max", "median"), default="avg",
                    help="per run, tokens/s from llama-bench's -r samples: avg (llama-bench's), max, median")
    ap.add_argument("--extra", default="", help="extra llama-bench arguments, one string (e.g. '-mmp 0')")
    ap.add_argument("--json", help="write the result (with every pair) to this path")
    a = ap.parse_args(argv)

    extra = a.extra.split() if a.extra else []
    for b in (a.patched, a.unpatched):
        if not Path(b).is_file():
            ap.error(f"no such binary: {b}")
    if not Path(a.model).is_file():
        ap.error(f"no such model: {a.model}")

    # one unrecorded warm-up run each (page cache, CPU clocks)
    run_bench(a.patched, a.model, a.n_gen, 1, a.threads, extra)
    run_bench(a.unpatched, a.model, a.n_gen, 1, a.threads, extra)

    cpu: dict[tuple[str, int], float] = {}

    def arm(which: str) -> Arm:
        def run(k: int) -> list[float]:
            ts, cpu[which, k] = run_bench(getattr(a, which), a.model, a.n_gen, a.reps, a.threads, extra, a.sample_stat)
            return [ts]

        return Arm(which, run)

    rows = alternate([arm("patched"), arm("unpatched")], a.rounds, on_round=lambda k, m: print(
        f"round {k:2d}: patched {m['patched']:8.2f} t/s  unpatched {m['unpatched']:8.2f} t/s  "
        f"ratio {m['patched'] / m['unpatched']:.4f}", file=sys.stderr, flush=True))
    est = compare(rows, "patched", "unpatched")
    cpu_rows = pd.DataFrame([{"arm": w, "round": k, "value": v} for (w, k), v in cpu.items()])
    cpu_est = compare(cpu_rows, "patched", "unpatched")
    med, lo, hi = est.value, est.lo, est.hi
    cmed, clo, chi = cpu_est.value, cpu_est.lo, cpu_est.hi
    pairs = rows.pivot_table(index="round", columns="arm", values="value").reset_index().to_dict("records")
    out = {
        "model": a.model, "patched": a.patched, "unpatched": a.unpatched, "rounds": a.rounds,
        "n_gen": a.n_gen, "reps": a.reps, "threads": a.threads, "extra": extra, "sample_stat": a.sample_stat,
        "median_ratio": med, "ci95_low": lo, "ci95_high": hi,
        "median_cpu_ratio": cmed, "cpu_ci95_low": clo, "cpu_ci95_high": chi,
        "median_patched_ts": float(np.median([p["patched"] for p in pairs])),
        "median_unpatched_ts": float(np.median([p["unpatched"] for p in pairs])),
        "pairs": pairs, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(f"median ratio patched/unpatched tg: {med:.4f}  95% CI [{lo:.4f}, {hi:.4f}]  "
          f"({a.rounds} rounds, {Path(a.model).name})")
    print(f"median ratio patched/unpatched CPU seconds per run: {cmed:.4f}  95% CI [{clo:.4f}, {chi:.4f}]  "
          "(>1: patched costs more; includes model load)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
