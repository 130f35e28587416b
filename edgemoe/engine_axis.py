"""Engines as an axis of one experiment (`experiment.engines`): every cell runs on each engine,
with the same model files, so that engine-to-engine ratios are paired inside rounds like
model-to-model ones (workflow/rules/rounds.smk puts the engine into each round cell).

The experiment's `engine` is always the first (the reference of every speed-up, and the engine
that profiles, decides the rounds and, unless `models_engine` says otherwise, makes the model
files); `experiment.engines` adds the others. Checked before any job:
- each named engine exists (`engine_ids`) and has the programs the tests need (edgemoe.config runs
  the interleave and prompt checks once per engine);
- an engine from git is reachable from this host when its source is not already here
  (`check_git_reachable`): offline, an error naming the ref and the fix, not a failed clone later;
- every model's architecture is one the engine knows (`check_architectures`, from the engine's
  own source tree, `src/llama-arch.cpp`): a model newer than an engine is a named error before
  any build or cell, not a crash record per cell (a user asking "did the newer engine close the
  gap" wants the pair of engines that can both run the model, not a table with holes).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class EngineAxisError(ValueError):
    """An engine of the axis cannot run this experiment here (the message names engine and fix)."""


def engine_ids(cfg: Mapping[str, Any]) -> list[str]:
    """[engine, *experiment.engines] without repeats; each must be a key of `engines`."""
    listed = list((cfg.get("experiment") or {}).get("engines") or [])
    for e in listed:
        if e not in cfg["engines"]:
            raise EngineAxisError(f"experiment.engines: {e!r} is not defined under engines; allowed: "
                                  f"{', '.join(sorted(cfg['engines']))}")
    return list(dict.fromkeys([cfg["engine"], *listed]))


def check_git_reachable(engine_id: str, source: Mapping[str, Any], have_source: bool, timeout_s: float = 20) -> None:
    """A git engine whose source is not here yet must be fetchable now (git ls-remote)."""
    if source.get("kind") != "git" or have_source:
        return
    url, ref = source["url"], source["ref"]
    fix = (f"build it once where {url} is reachable and copy results/engine/{engine_id}/ here, or use an engine "
           "vendored on PyPI (kind: pypi-sdist, llama-cpp-python's vendor/llama.cpp)")
    try:
        p = subprocess.run(["git", "ls-remote", url], capture_output=True, text=True, timeout=timeout_s,
                           env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"})
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EngineAxisError(f"engines.{engine_id}: git ref {ref!r} of {url} cannot be fetched from this host "
                              f"({type(e).__name__}): {fix}") from None
    if p.returncode != 0:
        why = (p.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise EngineAxisError(f"engines.{engine_id}: git ref {ref!r} of {url} cannot be fetched from this host "
                              f"(git ls-remote: {why}): {fix}")
    refs = {line.split("\t")[-1] for line in p.stdout.splitlines()}
    if not re.fullmatch(r"[0-9a-f]{7,40}", ref) and not refs & {ref, f"refs/tags/{ref}", f"refs/heads/{ref}"}:
        raise EngineAxisError(f"engines.{engine_id}: {url} has no branch or tag {ref!r}")


_ARCH_NAME = re.compile(r'\{\s*LLM_ARCH_[A-Z0-9_]+\s*,\s*"([^"]+)"\s*\}')


def known_architectures(tree: Path) -> set[str] | None:
    """The architecture names an engine's source knows (its LLM_ARCH_NAMES table), None where the
    tree is not here yet or has no such table."""
    for rel in ("src/llama-arch.cpp", "src/llama.cpp", "llama.cpp"):
        f = Path(tree) / rel
        if f.is_file():
            names = set(_ARCH_NAME.findall(f.read_text(errors="replace")))
            if names:
                return names
    return None


def check_architectures(engine_id: str, tree: Path, model_archs: Mapping[str, str],
                        known_elsewhere: Mapping[str, set[str] | None] = ()) -> None:
    """Every model's architecture must be known to the engine; the error names the models, their
    architectures, and the configured engines that do know them."""
    known = known_architectures(tree)
    if known is None:
        return
    unknown = {m: a for m, a in model_archs.items() if a not in known}
    if not unknown:
        return
    other = dict(known_elsewhere or {})
    lines = []
    for m, a in unknown.items():
        can = sorted(e for e, names in other.items() if e != engine_id and names and a in names)
        lines.append(f"{m} (architecture {a!r}; " + (f"known to {', '.join(can)})" if can else
                                                    "known to no engine of this config)"))
    raise EngineAxisError(
        f"engine {engine_id} does not know the architecture of {'; '.join(lines)}: take the model out of "
        f"experiment.models, or {engine_id} out of experiment.engines (or `engine:`), or pin a newer engine")


def check_experiment(exp, fetching: set[str]) -> list[str]:
    """The pre-flight check of every engine the run uses (the axis and the models' engine);
    `fetching`: the engines whose source a planned job fetches. Returns lines to print."""
    used = list(dict.fromkeys([*exp.engine_ids, exp.models_engine_id]))
    trees = {e: Path(f"results/engine/{e}/source") for e in used}
    for e in used:
        check_git_reachable(e, exp.cfg["engines"][e]["source"], have_source=e not in fetching)
    known = {e: known_architectures(t) for e, t in trees.items()}
    archs = {m: model.spec.arch for m, model in exp.models.items()}
    for e in exp.engine_ids:
        check_architectures(e, trees[e], archs, known)
    checked = [e for e in exp.engine_ids if known[e] is not None]
    return [f"pre-flight: engines: {', '.join(checked)} know every model's architecture"] if checked else []


__all__ = ["EngineAxisError", "check_architectures", "check_experiment", "check_git_reachable", "engine_ids",
           "known_architectures"]
