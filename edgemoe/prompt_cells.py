"""Prompt-driven cells: the study's own method beside llama-bench.

The study ran a set of prompts through llama.cpp's command-line program and parsed its
end-of-run perf footer. A prompt cell does the same with the pinned engine's own program
(`llama-cli`, examples/main at the study's commit): for every prompt of a set
(data/prompts/<set>.jsonl) and repetition one run of

    llama-cli -m <gguf> -f <prompt file> -n <n_gen> --ignore-eos --temp 0 --seed <seed>
              -c <n_ctx> -t <threads> -ngl <layers> [--no-mmap] --no-display-prompt

kept non-interactive: conversation mode is off at that commit unless asked for (`-no-cnv` is
added where an engine's help lists it, as newer ones switch it on by default), stdin is
/dev/null, and generation stops after n_gen tokens (`--ignore-eos`; greedy: temperature 0, the
seed recorded). Each run is measured like a benchmark cell (edgemoe.process: lock, exact peak
RSS, failures as results) and yields two rows: `pp` (the prompt: footer prompt eval) and `tg`
(generation: footer eval), kind `prompt`. Per-token latency: with `-v --log-timestamps
--log-prefix` the program logs a timestamped `eval:` line right before each forward pass (the
prompt's, then one per generated token), so time to first token is the time from the prompt's
pass to the first token's, and inter-token latencies are the gaps between consecutive token passes
(`token_gaps_ms`); printed text cannot serve, as a twin's tokens often print nothing. A footer that
does not parse is a `crash` row naming what was missing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe import perf_footer
from edgemoe.cells import CellSpec, base_record, classify
from edgemoe.process import bench_lock, child_env, run_measured
from edgemoe.prompts import PROGRAM  # noqa: F401 (workflow/scripts/prompt_cell.py finds it here)

N_CTX = 1024  # the longest prompt of edge-12 is ~150 tokens; prompt + n_gen must fit


def prompt_test_name(prompt_set: str, n_gen: int) -> str:
    """The cell's test name (a test of its own in rounds, records and estimates)."""
    return f"cli-{prompt_set}-g{n_gen}"


@functools.lru_cache(maxsize=None)
def _help_text(exe: str) -> str:
    try:
        p = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return p.stdout + p.stderr


def command(exe: str, gguf: str, prompt_file: Path, n_gen: int, seed: int, threads: int, n_gpu_layers: int,
            use_mmap: bool, n_ctx: int = N_CTX) -> list[str]:
    cmd = [exe, "-m", gguf, "-f", str(prompt_file), "-n", str(n_gen), "--ignore-eos", "--temp", "0",
           "--seed", str(seed), "-c", str(n_ctx), "-t", str(threads), "-ngl", str(n_gpu_layers),
           "--no-display-prompt", "-v", "--log-timestamps", "--log-prefix"]
    if not use_mmap:
        cmd.append("--no-mmap")
    if "-no-cnv" in _help_text(exe):  # newer engines start a chat unless told not to
        cmd.append("-no-cnv")
    return cmd


_EVAL_LINE = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+) D eval: ", re.M)


def eval_times_ms(stderr: str) -> list[float]:
    """The timestamps (ms since the log started) of the program's `eval:` lines: the prompt's
    forward pass first, then one per generated token."""
    return [((int(m) * 60 + int(s)) * 1000 + int(ms)) + int(us) / 1000 for m, s, ms, us in _EVAL_LINE.findall(stderr)]


def token_latency(stderr: str) -> tuple[float | None, list[float]]:
    """(time to first token, inter-token gaps) in ms from the eval-line timestamps."""
    t = eval_times_ms(stderr)
    if len(t) < 2:
        return None, []
    return round(t[1] - t[0], 3), [round(b - a, 3) for a, b in zip(t[1:], t[2:])]


def run_prompt_cell(spec: CellSpec, exe: str, prompts: list[dict[str, str]], prompt_set: str, seed: int,
                    repetitions: int, out_dir: Path, stderr_path: Path, lock_path: Path) -> list[dict[str, Any]]:
    """Every prompt x repetition, one after another under the bench lock; two rows per run (or
    one failure row per failed run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    stderr_log = []
    with bench_lock(lock_path):
        for rep in range(repetitions):
            for p in prompts:
                prompt_file = out_dir / f"{p['id']}.txt"
                prompt_file.write_text(p["text"])
                err = out_dir / f"{p['id']}.r{rep}.stderr.log"
                cmd = command(exe, spec.model_path, prompt_file, spec.n_gen, seed, spec.threads, spec.n_gpu_layers,
                              spec.use_mmap)
                result = run_measured(cmd, timeout_s=spec.timeout_s, env=child_env(spec.threads), stderr_path=err,
                                      memory_limit_bytes=spec.memory_limit_bytes)
                stdout = "".join(text for _, text in result.stdout_lines)
                (out_dir / f"{p['id']}.r{rep}.out.txt").write_text(stdout)
                stderr_log.append(f"==> {p['id']} repetition {rep}\n{err.read_text(errors='replace')}")
                records += _run_records(spec, result, p, prompt_set, seed, rep, err, cmd)
    stderr_path.write_text("\n".join(stderr_log))
    return records


def _run_records(spec: CellSpec, result, prompt: dict[str, str], prompt_set: str, seed: int, rep: int,
                 err: Path, cmd: list[str]) -> list[dict[str, Any]]:
    status, reason = classify(result, [{}], 1)
    footer, stderr = None, err.read_text(errors="replace")
    if status == "ok":
        try:
            footer = perf_footer.parse(stderr)
        except perf_footer.FooterError as e:
            status, reason = "crash", str(e)
    base = base_record(spec, result)
    run_id = f"{spec.cell_id}@{result.start_utc}/{prompt['id']}/{rep}"
    ttft, gaps = token_latency(stderr)
    base.update(kind="prompt", status=status, status_reason=reason or None, prompt_set=prompt_set,
                prompt_id=prompt["id"], prompt_kind=prompt["kind"],
                prompt_sha256=hashlib.sha256(prompt["text"].encode()).hexdigest(), sampler="greedy (temp 0)",
                sampler_seed=seed, program=Path(cmd[0]).name, program_args=json.dumps(cmd[1:]),
                energy_status="missing", energy_reason="not measured in prompt cells", repetition=rep,
                raw_output=str(err))
    if footer is None:
        return [{**base, "run_id": f"{run_id}/failed", "n_prompt": 0, "n_gen": spec.n_gen,
                 "stderr_tail": result.stderr_tail}]
    latency = {"ttft_ms": ttft, "load_ms": footer["load_ms"], "total_ms": footer["total_ms"],
               "sampling_ms": footer["sampling_ms"], "token_gaps_ms": json.dumps(gaps), "token_passes": len(gaps) + 1 if ttft is not None else 0,
               **({f"itl_p{q}_ms": float(np.percentile(gaps, q)) for q in (50, 90, 99)} if gaps else {})}
    pp = {"phase": "pp", "n_prompt": footer["prompt_tokens"], "n_gen": 0, "tokens": footer["prompt_tokens"],
          "time_ns": int(footer["prompt_eval_ms"] * 1e6), "tokens_per_s": footer["prompt_tok_s"]}
    tg = {"phase": "tg", "n_prompt": 0, "n_gen": footer["eval_runs"], "tokens": footer["eval_runs"],
          "time_ns": int(footer["eval_ms"] * 1e6), "tokens_per_s": footer["eval_tok_s"]}
    return [{**base, **latency, **row, "run_id": f"{run_id}/{row['phase']}"} for row in (pp, tg)
            if row["tokens"] > 0 and row["time_ns"] > 0]
