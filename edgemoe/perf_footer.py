"""llama.cpp's end-of-run performance footer: what the study's harness parsed from its prompt runs.

Formats handled (tests/fixtures/llamacpp/perf-footer-*.txt, and the footers of the engines we
build, captured by tests/test_prompt_cells.py):
- `llama_perf_context_print:        load time = ... ms` (builds since late 2024), optionally behind
  the log prefix `0.00.064.607 I ` (`--log-timestamps --log-prefix`);
- `llama_print_timings:` (older builds), the same fields;
- `llama_perf_sampler_print: sampling time = ...` / `sample time` (the sampler's line).
A footer that lacks a required field is a FooterError naming what is missing: never a silent 0.
"""

from __future__ import annotations

import re

PREFIX = r"^(?:\d+\.\d+\.\d+\.\d+ [A-Z] )?(?:llama_perf_context_print|llama_perf_sampler_print|llama_print_timings):\s*"
_NUM = r"([0-9.]+|inf|nan)"
_LINES = {
    "load": re.compile(PREFIX + r"load time =\s*" + _NUM + r" ms", re.M),
    "sampling": re.compile(PREFIX + r"(?:sampling|sample) time =\s*" + _NUM + r" ms /\s*(\d+) runs", re.M),
    "prompt_eval": re.compile(PREFIX + r"prompt eval time =\s*" + _NUM + r" ms /\s*(\d+) tokens", re.M),
    "eval": re.compile(PREFIX + r"eval time =\s*" + _NUM + r" ms /\s*(\d+) runs", re.M),
    "total": re.compile(PREFIX + r"total time =\s*" + _NUM + r" ms(?: /\s*(\d+) tokens)?", re.M),
}
REQUIRED = ("load", "prompt_eval", "eval", "total")


class FooterError(ValueError):
    """The footer is missing or incomplete (the message names the missing fields)."""


def _last(pattern: re.Pattern, text: str) -> re.Match | None:
    hits = list(pattern.finditer(text))
    return hits[-1] if hits else None


def parse(text: str) -> dict[str, float | int | None]:
    """The last footer in text: load, prompt eval and eval times (ms), their token counts and
    tok/s, sampling time and runs, total time and tokens."""
    found = {k: _last(p, text) for k, p in _LINES.items()}
    missing = [k for k in REQUIRED if found[k] is None]
    if missing:
        names = {"load": "load time", "prompt_eval": "prompt eval time", "eval": "eval time", "total": "total time"}
        have = [names[k] for k in REQUIRED if found[k] is not None]
        raise FooterError(f"perf footer: missing {', '.join(names[k] for k in missing)}"
                          + (f" (found {', '.join(have)})" if have else " (no footer line at all: truncated run?)"))
    pe, ev, tot, sm = found["prompt_eval"], found["eval"], found["total"], found["sampling"]
    prompt_ms, prompt_tokens = float(pe.group(1)), int(pe.group(2))
    eval_ms, eval_runs = float(ev.group(1)), int(ev.group(2))
    return {
        "load_ms": float(found["load"].group(1)),
        "prompt_eval_ms": prompt_ms, "prompt_tokens": prompt_tokens,
        "prompt_tok_s": prompt_tokens / (prompt_ms / 1e3) if prompt_ms > 0 else None,
        "eval_ms": eval_ms, "eval_runs": eval_runs,
        "eval_tok_s": eval_runs / (eval_ms / 1e3) if eval_ms > 0 else None,
        "sampling_ms": float(sm.group(1)) if sm else None, "sampling_runs": int(sm.group(2)) if sm else None,
        "total_ms": float(tot.group(1)), "total_tokens": int(tot.group(2)) if tot.group(2) else None,
    }
