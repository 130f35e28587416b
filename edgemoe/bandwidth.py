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
    only looked up (an untied output matrix exists), and only the used share of stacked experts."""
    from gguf import GGUFReader

    r = GGUFReader(gguf_path)
    arch = r.fields["general.architecture"].contents()
    used = r.fields.get(f"{arch}.expert_used_count")
    count = r.fields.get(f"{arch}.expert_count")
    share = used.contents() / count.contents() if used and count else 1.0
    names = {t.name for t in r.tensors}
    total = 0
    for t in r.tensors:
        n = int(t.n_bytes)
        if t.name == "token_embd.weight" and "output.weight" in names:
            continue
        total += int(n * share) if "_exps." in t.name else n
    return total
