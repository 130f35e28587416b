"""Prompt sets (data/prompts/<set>.jsonl; data/prompts/README.md): the text that prompt-driven
cells (edgemoe/prompt_cells.py) and locality runs (edgemoe/locality_cells.py) decode from."""

from __future__ import annotations

import json
from pathlib import Path

PROMPTS_DIR = "data/prompts"


def prompts_path(name: str) -> str:
    """A prompt set: a name under data/prompts/ (edge-12), or a path to a .jsonl file."""
    return name if name.endswith(".jsonl") else f"{PROMPTS_DIR}/{name}.jsonl"


def available() -> list[str]:
    return sorted(p.stem for p in Path(PROMPTS_DIR).glob("*.jsonl"))


def read_prompts(path: Path | str) -> list[dict[str, str]]:
    """A prompt set: one JSON object per line with a unique `id`, a `kind` and a non-empty `text`;
    a bad line is an error naming the file and line."""
    out, seen = [], set()
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            p = {"id": str(r["id"]), "kind": str(r.get("kind", "")), "text": str(r["text"])}
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{i}: not a prompt ({type(e).__name__}: {e})") from None
        if not p["text"].strip() or p["id"] in seen:
            raise ValueError(f"{path}:{i}: prompt {p['id']!r} is empty or its id is not unique")
        seen.add(p["id"])
        out.append(p)
    if not out:
        raise ValueError(f"{path}: no prompts")
    return out


PROGRAM = "llama-cli"  # the engine program prompt cells run (edgemoe/prompt_cells.py)


def check_prompt_settings(pr: dict, engine_id: str, targets: list[str]) -> None:
    """experiment.prompts, checked before any job: the set exists and reads, the engine builds
    the program (ValueError naming the key)."""
    if not pr.get("enabled"):
        return
    path = prompts_path(pr["set"])
    if not Path(path).is_file():
        raise ValueError(f"experiment.prompts.set: {path} not found; prompt sets here: {available() or 'none'}")
    try:
        read_prompts(path)
    except ValueError as e:
        raise ValueError(f"experiment.prompts.set: {e}") from None
    if PROGRAM not in targets:
        raise ValueError(f"engines.{engine_id}.targets: prompt cells need {PROGRAM!r} (experiment.prompts is on)")
