#!/usr/bin/env python3
"""Cost of the node-timing patch when profiling is off.

Runs two llama-bench binaries of the same llama.cpp commit, one built with the node-timing patch
(profiling off, as llama-bench never enables it) and one unpatched, on the same GGUF, alternating
them for K rounds (order flipped every round: AB, BA, AB, ... so slow drift cancels). Each run is
one llama-bench tg test. Prints, and optionally writes as JSON, the median of the paired ratios
patched/unpatched (tokens per second) with a percentile-bootstrap 95% interval of that median, and
the same for the CPU seconds each run used (user+sys from wait4; >1 means the patched build costs
more). On a shared, busy VM the tokens/s ratio is noisy; with -t 1 the CPU-time ratio is a steadier
proxy (it includes the model load, the same in both builds, which dilutes it slightly).

A ratio of 1.0 means no cost; below 1.0 the patched build is slower.

Standalone: numpy only; no Snakemake.
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


def bootstrap_median_ci(x: np.ndarray, n_boot: int = 10000, ci: float = 0.95, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    meds = np.median(x[idx], axis=1)
    a = (1.0 - ci) / 2.0
    lo, hi = np.quantile(meds, [a, 1.0 - a])
    return float(lo), float(hi)


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
    ap.add_argument("--n-boot", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
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

    pairs = []
    for k in range(a.rounds):
        order = ("patched", "unpatched") if k % 2 == 0 else ("unpatched", "patched")
        res, cpu = {}, {}
        for which in order:
            res[which], cpu[which] = run_bench(getattr(a, which), a.model, a.n_gen, a.reps, a.threads, extra,
                                               a.sample_stat)
        ratio = res["patched"] / res["unpatched"]
        cpu_ratio = cpu["patched"] / cpu["unpatched"]
        pairs.append({"round": k, "order": "".join(o[0].upper() for o in order), **res, "ratio": ratio,
                      "cpu_s_patched": cpu["patched"], "cpu_s_unpatched": cpu["unpatched"], "cpu_ratio": cpu_ratio})
        print(f"round {k:2d} {pairs[-1]['order']}: patched {res['patched']:8.2f} t/s  "
              f"unpatched {res['unpatched']:8.2f} t/s  ratio {ratio:.4f}  cpu-time ratio {cpu_ratio:.4f}",
              file=sys.stderr, flush=True)

    r = np.array([p["ratio"] for p in pairs])
    med = float(np.median(r))
    lo, hi = bootstrap_median_ci(r, n_boot=a.n_boot, seed=a.seed) if r.size > 1 else (med, med)
    rc_ = np.array([p["cpu_ratio"] for p in pairs])
    cmed = float(np.median(rc_))
    clo, chi = bootstrap_median_ci(rc_, n_boot=a.n_boot, seed=a.seed) if rc_.size > 1 else (cmed, cmed)
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
