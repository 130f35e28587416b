"""The memory-bandwidth ceiling of a device and the weight bytes a model reads per generated token:
together they say whether decode speed tracks active or total parameters (the roofline figure)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any


def build_stream(source: Path, exe: Path) -> None:
    subprocess.run(["cc", "-O3", "-march=native", "-fopenmp", str(source), "-o", str(exe)], check=True)


def measure_stream(exe: Path, threads: int, array_mib: int = 1024, repetitions: int = 10) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_PROC_BIND": "spread"}
    out = subprocess.run([str(exe), str(array_mib), str(repetitions)], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def weight_bytes_per_token(gguf_path: Path | str) -> int:
    """Bytes of weights a decode step reads: every tensor, except the token embedding when it is
    only looked up (an untied output matrix exists), and only the used share of stacked experts.
    From the header alone (edgemoe.modelcheck: milliseconds, where gguf-py's reader took seconds
    per cell parsing the vocabulary, time that counted against the rounds' budget)."""
    from edgemoe.modelcheck import read_gguf_header

    h = read_gguf_header(gguf_path, keep=lambda key: not key.startswith("tokenizer."))
    used, count = h.kv.get(f"{h.arch}.expert_used_count"), h.kv.get(f"{h.arch}.expert_count")
    share = used / count if used and count else 1.0
    names = {t.name for t in h.tensors}
    total = 0
    for t in h.tensors:
        if t.name == "token_embd.weight" and "output.weight" in names:
            continue
        total += int(t.nbytes * share) if "_exps." in t.name else t.nbytes
    return total
