"""Expert-locality runs (config `experiment.locality`, workflow/rules/locality.smk): edgemoe-profile
with profiling off and `--experts` on, once per prompt of a prompt set, records every MoE layer's
router top-k at every decode step; the rows, with their provenance, form the locality table
(edgemoe.locality_data: results/locality.parquet, never the run table) that edgemoe.locality
analyses.

Models: ids of the experiment (`experiment.models` and its derived ones: whatever `weights` gives,
a twin or a real GGUF from weights=hf/local), and skewed twins `M@skew<s>` of a registry MoE M:
M's spec and twin seed with router skew s (edgemoe.twins.router_row_scale), always a twin whatever
`weights` says. A twin's routing comes from random weights: it says how the engine and the knob
route, never how a trained model does.

What is decoded (`decode`): text (the prompt's own tokens fed one per decode step: real text, the
routing a decode of that text would see, whatever the weights would have generated; a prompt shorter
than the steps asked gives fewer), greedy (the model's own next token, argmax of the logits, after
the prompt: a twin's random weights soon repeat a few tokens), repeat (one token id again and
again) or random (uniform random ids, what llama-bench at the study's commit feeds); every row
keeps the token fed, the prompt's id and the sha256 of its text.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from edgemoe import paths
from edgemoe.config import ConfigError, Model, content_hash
from edgemoe.locality_data import SCHEMA
from edgemoe.prompts import prompts_path

DECODE_MODES = ("text", "greedy", "repeat", "random")
_SKEW = re.compile(r"skew(\d+(?:\.\d+)?)")
DEFAULTS = {
    "enabled": False,
    "models": [],
    "prompts": "edge-12",
    "n_gen": 64,
    "warmup": 0,
    "decode": ["text", "greedy"],
}


@dataclass(frozen=True)
class Plan:
    """experiment.locality, resolved: which model files, prompts and decode modes."""

    enabled: bool
    models: dict[str, Model]
    prompt_set: str
    prompts_path: str
    n_gen: int
    warmup: int
    decode: tuple[str, ...]

    def twins_to_write(self, experiment_models: dict[str, Model]) -> dict[str, Model]:
        """Skewed twins that no other rule writes (not models of the experiment)."""
        return {m: model for m, model in self.models.items() if m not in experiment_models}

    def cell(self, device: str, engine: str, model_id: str, quant: str, decode: str) -> str:
        return paths.locality_cell(
            device, engine, model_id, self.models[model_id].weights_tag, quant, decode, self.prompt_set
        )

    def cells(self, device: str, engine: str, quants: list[str]) -> list[str]:
        if not self.enabled:
            return []
        return [self.cell(device, engine, m, q, d) for m in self.models for q in quants for d in self.decode]


def skew_twin(model_id: str, cfg: dict[str, Any]) -> Model | None:
    """`M@skew<s>`: M's spec and twin seed with router skew s, always a twin (None: not such an id)."""
    from edgemoe.architectures import ArchSpec
    from edgemoe.counterfactuals import split
    from edgemoe.twins import GENERATOR_VERSION

    base, derivation = split(model_id)
    m = _SKEW.fullmatch(derivation or "")
    if not m:
        return None
    key = "experiment.locality.models"
    if base not in cfg["models"]:
        raise ConfigError(f"{key}: {model_id!r}: {base!r} is not in the model registry (models:)")
    entry = cfg["models"][base]
    spec = ArchSpec.from_config(base, entry["spec"])
    if not spec.is_moe:
        raise ConfigError(f"{key}: {model_id!r}: {base!r} is dense: it has no router")
    skew = float(m.group(1))
    skew = int(skew) if skew.is_integer() else skew  # hashed as the registry's `router_skew: 1` is
    seed = entry["twin"]["seed"]
    tag = f"twin-s{seed}-{content_hash([entry['spec'], skew, GENERATOR_VERSION])[:8]}"
    return Model(model_id, "moe", spec, "twin", tag, seed, None, None, None, derived_from=base, router_skew=skew)


def plan(cfg: dict[str, Any], experiment_models: dict[str, Model]) -> Plan:
    """experiment.locality resolved against the experiment's models; ConfigError naming the key."""
    loc = {**DEFAULTS, **(cfg["experiment"].get("locality") or {})}
    key = "experiment.locality"
    bad = [d for d in loc["decode"] if d not in DECODE_MODES]
    if bad or not loc["decode"]:
        raise ConfigError(f"{key}.decode: {bad or '[]'}; allowed: {', '.join(DECODE_MODES)}")
    models: dict[str, Model] = {}
    for model_id in loc["models"] if loc["enabled"] else []:  # off: nothing to resolve (other experiments' ids)
        m = experiment_models.get(model_id) or skew_twin(model_id, cfg)
        if m is None:
            raise ConfigError(
                f"{key}.models: {model_id!r} is neither a model of the experiment "
                f"({', '.join(experiment_models)}) nor a skewed twin M@skew<s> of a registry MoE"
            )
        if not m.spec.is_moe:
            raise ConfigError(f"{key}.models: {model_id!r} is dense: it has no router")
        models[model_id] = m
    for model_id, m in list(models.items()):  # M@skew<s> where M is already that very twin: the same file
        same = models.get(m.derived_from or "")
        if (
            model_id not in experiment_models
            and same is not None
            and same.weights == "twin"
            and (same.twin_seed, float(same.router_skew)) == (m.twin_seed, float(m.router_skew))
            and same.spec_config == m.spec_config
        ):
            del models[model_id]
    path = prompts_path(loc["prompts"])
    if loc["enabled"] and not Path(path).is_file():
        have = sorted(p.stem for p in Path("data/prompts").glob("*.jsonl"))
        raise ConfigError(f"{key}.prompts: {path} not found; prompt sets here: {have or 'none'}")
    if loc["enabled"] and not models:
        raise ConfigError(f"{key}.models: empty; name the MoE models whose routing to record")
    return Plan(
        bool(loc["enabled"]),
        models,
        Path(path).stem,
        path,
        int(loc["n_gen"]),
        int(loc["warmup"]),
        tuple(dict.fromkeys(loc["decode"])),
    )


# ---- one run -------------------------------------------------------------------------------------


def run_cell(
    *,
    exe: str,
    gguf: str,
    model_info: dict[str, Any],
    build_info: dict[str, Any],
    device_id: str,
    device: Any,
    prompts: list[dict[str, str]],
    prompt_set: str,
    decode: str,
    n_gen: int,
    warmup: int,
    use_mmap: bool,
    timeout_s: float,
    lock: str,
    log: str,
    work_dir: Path,
) -> tuple[pa.Table, dict]:
    """Run the profiler once per prompt (under the bench lock: nothing is timed, but nothing runs
    beside a cell either); return the locality rows and a summary (per prompt: what was decoded)."""
    from edgemoe.locality import check, read_experts
    from edgemoe.process import bench_lock, child_env, run_measured

    work_dir.mkdir(parents=True, exist_ok=True)
    cell = f"{device_id}/{build_info['engine']}/{model_info['model']}/{Path(gguf).parent.name}/{model_info['quant']}"
    rows, per_prompt = [], []
    Path(log).write_text("")
    start = None
    with bench_lock(lock):
        for p in prompts:
            text_path, experts_path, summary_path = (work_dir / f"prompt.{x}" for x in ("txt", "experts.jsonl", "json"))
            text_path.write_bytes(p["text"].encode())
            for f in (experts_path, summary_path):
                f.unlink(missing_ok=True)
            cmd = [
                exe,
                "-m",
                gguf,
                "-t",
                str(device.threads),
                "-ngl",
                str(device.n_gpu_layers),
                "--mmap",
                "1" if use_mmap else "0",
                "--prompt-file",
                str(text_path),
                "--decode",
                decode,
                "-n",
                str(n_gen),
                "--warmup",
                str(warmup),
                "--profile",
                "0",
                "--experts",
                str(experts_path),
                "--summary",
                str(summary_path),
            ]
            err = work_dir / "stderr.log"
            r = run_measured(cmd, timeout_s=timeout_s, env=child_env(device.threads), stderr_path=err)
            with open(log, "a") as f:
                f.write(f"== {p['id']}: {' '.join(cmd)}\n{err.read_text(errors='replace') if err.exists() else ''}")
            if r.exit_code != 0 or not summary_path.is_file():
                why = "timed out" if r.timed_out else f"exit code {r.exit_code}, signal {r.signal}"
                raise RuntimeError(
                    f"locality run {cell} prompt {p['id']}: edgemoe-profile failed ({why}):\n{r.stderr_tail[-2000:]}"
                )
            start = start or r.start_utc
            s = json.loads(summary_path.read_text())
            if s.get("prompt_bytes") != len(p["text"].encode()) or s.get("decode") != decode:
                raise RuntimeError(
                    f"{cell} prompt {p['id']}: the profiler read {s.get('prompt_bytes')} bytes in mode "
                    f"{s.get('decode')!r}, not the prompt's {len(p['text'].encode())} in {decode!r}"
                )
            sel = read_experts(experts_path)
            n_expert, n_used = int(s["n_expert"]), int(s["n_expert_used"])
            check(sel, n_expert, n_used, f"{cell} prompt {p['id']}")
            if (
                sorted(sel["step"].unique()) != list(range(int(s["n_gen"])))
                or sel.drop_duplicates("step")["token"].tolist() != s["decode_tokens"]
            ):
                raise RuntimeError(f"{cell} prompt {p['id']}: expert rows and the summary's decode tokens disagree")
            per_prompt.append(
                {
                    "prompt_id": p["id"],
                    "prompt_sha256": _sha(p["text"]),
                    "n_prompt_tokens": s["n_prompt"],
                    "n_gen": s["n_gen"],
                    "prompt_tokens": s["prompt_tokens"],
                    "warmup_tokens": s["warmup_tokens"],
                    "decode_tokens": s["decode_tokens"],
                    "decode_text": s["decode_text"],
                    "peak_rss_bytes": r.peak_rss_bytes,
                    "wall_s": round(r.wall_s, 3),
                }
            )
            facts = {
                "prompt_id": p["id"],
                "prompt_kind": p["kind"],
                "prompt_sha256": _sha(p["text"]),
                "n_prompt_tokens": int(s["n_prompt"]),
                "n_gen": int(s["n_gen"]),
                "arch": s["arch"],
                "n_layer": _int(s["n_layer"]),
                "n_expert": n_expert,
                "n_expert_used": n_used,
            }
            rows += [{**facts, **r_} for r_ in sel.to_dict("records")]
    m, b = model_info, build_info
    run_id = f"{cell}/{decode}-{prompt_set}@{start}"
    common = {
        "run_id": run_id,
        "device": device_id,
        "backend": device.backend,
        "engine": b["engine"],
        "engine_commit": b["commit"],
        "patches_sha256": b.get("patches_sha256"),
        "profiler_sha256": b.get("binaries", {}).get("edgemoe-profile", {}).get("sha256"),
        "model": m["model"],
        "derived_from": m.get("derived_from"),
        "weights_source": m["weights_source"],
        "is_twin": m["weights_source"] == "twin",
        "router_skew": m.get("twin_router_skew"),
        "twin_seed": m.get("twin_seed"),
        "hf_repo": m.get("hf_repo"),
        "hf_revision": m.get("hf_revision"),
        "quant": m["quant"],
        "gguf_sha256": m["gguf_sha256"],
        "gguf_bytes": m["gguf_bytes"],
        "decode": decode,
        "prompt_set": prompt_set,
        "warmup": warmup,
        "n_threads": device.threads,
        "run_start_utc": start,
    }
    table = pa.Table.from_pylist([{**common, **r_} for r_ in rows], schema=SCHEMA)
    summary = {
        **common,
        "n_gen_asked": n_gen,
        "prompts": per_prompt,
        "note": "twin: random weights, the routing is not a trained model's" if common["is_twin"] else None,
    }
    return table, summary


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _int(v: Any) -> int | None:
    return None if v in (None, "null") else int(v)


__all__ = ["DECODE_MODES", "Plan", "plan", "run_cell", "skew_twin"]
