"""llama-bench: its command line, and its output read by field name (fields drift between versions).

We ask for `-o jsonl` (one JSON object per test) where the version has it, and accept json
(one array) and csv as well, so released raw outputs of any version parse the same way.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from typing import Any

# Fields we read, with the names later versions use for them.
ALIASES = {
    "n_depth": ["n_depth"],
    "use_mmap": ["use_mmap"],
    "load_mode": ["load_mode"],
}


def command(bench: str, model: str, n_prompt: int, n_gen: int, repetitions: int, threads: int,
            n_gpu_layers: int, use_mmap: bool, output: str = "jsonl", extra: tuple[str, ...] = ()) -> list[str]:
    """Every setting that changes a measurement is passed explicitly, never left to defaults.

    -v keeps llama.cpp's loader messages on stderr: without it a failed load says only "failed to
    load model", and the reason (e.g. "insufficient memory") is what a failed cell records."""
    return [bench, "-m", model, "-p", str(n_prompt), "-n", str(n_gen), "-r", str(repetitions),
            "-t", str(threads), "-ngl", str(n_gpu_layers), *load_args(bench, use_mmap),
            # flash attention off unless asked: newer llama-bench defaults to "auto", which turns it on
            # on some CPUs and changes decode speed
            *([] if "-fa" in extra else ["-fa", "0"]),
            "-o", output, "-v", *extra]


@functools.lru_cache(maxsize=None)
def _help(bench: str) -> str:
    import subprocess

    try:
        proc = subprocess.run([bench, "--help"], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return ""
    return proc.stdout + proc.stderr


def load_args(bench: str, use_mmap: bool) -> list[str]:
    """The weight-loading flag: -mmp 0|1 (the study's engine), or -lm mmap|none where llama-bench
    replaced it with a load mode (2026 engines)."""
    if "--load-mode" in _help(bench):
        return ["-lm", "mmap" if use_mmap else "none"]
    return ["-mmp", "1" if use_mmap else "0"]


def flash_attn_name(value: Any) -> str:
    """llama-bench's flash_attn (false/true at the study's engine, -1/0/1 later): "False", "True" or "auto"."""
    v = str(value).strip().lower()
    return {"true": "True", "1": "True", "false": "False", "0": "False", "-1": "auto"}.get(v, str(value))


def supports_depth(bench: str) -> bool:
    """Whether this llama-bench has -d/--n-depth (llama.cpp from mid-2025; not the study's engine)."""
    return "--n-depth" in _help(bench)


# The KV cache size and context length llama.cpp logs (-v), at the study's engine and at newer ones:
#   llama_kv_cache_init: ... KV self size  =  516.00 MiB, K (f16): ...        (f7cd13301)
#   llama_kv_cache: size =  516.00 MiB (  4128 cells,  16 layers, ...), ...   (0c1e57098)
_KV_SIZE = re.compile(r"(?:KV self size|llama_kv_cache: size)\s*=\s*([0-9.]+) MiB")
_N_CTX = re.compile(r"\bn_ctx\s*=\s*(\d+)")


def logged_kv_cache(stderr_text: str) -> tuple[int | None, int | None]:
    """(KV cache bytes, n_ctx) of the last context llama.cpp logged, or None where not logged."""
    kv = _KV_SIZE.findall(stderr_text)
    ctx = _N_CTX.findall(stderr_text)
    return (int(float(kv[-1]) * 2**20) if kv else None, int(ctx[-1]) if ctx else None)


def parse(text: str) -> list[dict[str, Any]]:
    """llama-bench output (jsonl, json or csv) -> one dict per test, values typed."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    if text.startswith("{"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = list(csv.DictReader(io.StringIO(text)))
    return [{k: _typed(k, v) for k, v in r.items()} for r in rows]


def _typed(key: str, value: str) -> Any:
    if key in ("samples_ns", "samples_ts"):
        return [float(x) for x in value.split(";") if x] if value else []
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def test_name(row: dict[str, Any]) -> str:
    """pp512, tg128 or pp512+tg128 (llama-bench's own naming)."""
    p, g = int(row.get("n_prompt", 0)), int(row.get("n_gen", 0))
    depth = int(row.get("n_depth", 0) or 0)
    name = f"pp{p}" if g == 0 else f"tg{g}" if p == 0 else f"pp{p}+tg{g}"
    return f"{name}@d{depth}" if depth else name


def repetitions(row: dict[str, Any]) -> list[int]:
    """Per-repetition times in ns (every repetition, not just llama-bench's mean)."""
    samples = row.get("samples_ns")
    if isinstance(samples, str):
        samples = [float(x) for x in samples.split(";") if x]
    if not samples:
        raise ValueError(f"llama-bench row for {test_name(row)} has no samples_ns")
    return [int(s) for s in samples]


def get(row: dict[str, Any], field: str, default: Any = None) -> Any:
    for name in ALIASES.get(field, [field]):
        if name in row:
            return row[name]
    return default
