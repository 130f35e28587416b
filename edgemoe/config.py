"""Turn the validated config dict into the experiment: which cells, which files, which settings.

The JSON schema (config/schema.yaml) checks types and allowed values; this module checks what a
schema cannot (cross references, architecture constraints, the host) and derives the rest. Every
error names the config key and the allowed values, and is raised before any job runs.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from edgemoe import cuda, engine_axis, interleave, paths, regimes
from edgemoe.architectures import ArchSpec
from edgemoe.experiment_types import Device, Model, Test, content_hash  # noqa: F401 (re-exported)
from edgemoe.host import device_matches, total_memory_bytes
from edgemoe.prompts import check_prompt_settings


class ConfigError(ValueError):
    """A configuration problem, named by its key."""


def _choices(d: dict) -> str:
    return ", ".join(sorted(d))


def resolve_device(cfg: dict[str, Any], host_device: str | None = None) -> str:
    """The device whose cells run here. `auto` picks the first profile matching this host.

    A device named explicitly must match this host too, unless cells do not run here (released
    data); EDGEMOE_HOST_DEVICE lets tests declare the host's profile."""
    devices = cfg["devices"]
    wanted = cfg["device"]
    if wanted != "auto" and wanted not in devices:
        raise ConfigError(f"device: {wanted!r} is not a device profile; allowed: auto, {_choices(devices)}")
    declared = host_device or os.environ.get("EDGEMOE_HOST_DEVICE")
    if declared:
        if declared not in devices:
            raise ConfigError(f"EDGEMOE_HOST_DEVICE={declared!r} is not a device profile; allowed: {_choices(devices)}")
        matching = [declared]
    else:
        matching = [d for d, p in devices.items() if device_matches(p["match"])[0]]
    if wanted == "auto":
        if not matching:
            raise ConfigError("device: auto found no profile matching this host; add one under devices:")
        return matching[0]
    return wanted


def check_device_is_here(cfg: dict[str, Any], device: str) -> None:
    """Refuse to run another device's cells on this host."""
    declared = os.environ.get("EDGEMOE_HOST_DEVICE")
    if declared:
        ok, why = declared == device, f"EDGEMOE_HOST_DEVICE says this host is {declared}"
    else:
        ok, why = device_matches(cfg["devices"][device]["match"])
    if not ok:
        here = [d for d, p in cfg["devices"].items() if device_matches(p["match"])[0]]
        raise ConfigError(
            f"device: cells of {device!r} cannot run on this host ({why}). This host matches "
            f"{here or 'no profile'}; select it with --config device={here[0] if here else '<id>'}, "
            "or use --config runs=released to build tables without running cells.")


class Experiment:
    """Everything the DAG needs from the config, resolved and checked."""

    def __init__(self, cfg: dict[str, Any], host_device: str | None = None):
        self.cfg = cfg
        self.runs = cfg["runs"]
        self.release_file = None
        if self.runs in ("released", "both"):
            release = cfg.get("release")
            if not release:
                raise ConfigError("release: runs=released needs a release id (a folder under data/released/)")
            self.release_file = f"data/released/{release}/runs.jsonl.gz"
            if not Path(self.release_file).is_file():
                have = sorted(p.name for p in Path("data/released").glob("*") if p.is_dir())
                raise ConfigError(f"release: {self.release_file} not found; releases here: {have or 'none'}")
        self.engine_id = cfg["engine"]
        if self.engine_id not in cfg["engines"]:
            raise ConfigError(f"engine: {self.engine_id!r} is not defined under engines; allowed: {_choices(cfg['engines'])}")
        self.engine = cfg["engines"][self.engine_id]
        try:  # every engine of the axis runs every cell (edgemoe/engine_axis.py); the first is `engine`
            self.engine_ids = engine_axis.engine_ids(cfg)
        except engine_axis.EngineAxisError as e:
            raise ConfigError(str(e)) from None
        # The engine whose tools make the model files (default: engine): other engines use the same files.
        self.models_engine_id = cfg.get("models_engine") or self.engine_id
        if self.models_engine_id not in cfg["engines"]:
            raise ConfigError(f"models_engine: {self.models_engine_id!r} is not defined under engines; allowed: "
                              f"{_choices(cfg['engines'])}")
        self.models_engine = cfg["engines"][self.models_engine_id]
        self.devices = {d: self._device(d, p) for d, p in cfg["devices"].items()}
        # Released data runs no cell: no device is resolved or checked, whatever this host is.
        self.device_id = None if self.runs in ("released", "union") else resolve_device(cfg, host_device)
        self.device = self.devices.get(self.device_id)
        exp = cfg["experiment"]
        self.quants = list(exp["quants"])
        self.models = {m: self._model(m) for m in self._model_ids(exp)}
        if exp["baseline"] not in self.models:
            raise ConfigError(f"experiment.baseline: {exp['baseline']!r} is not in experiment.models ({', '.join(self.models)})")
        self.baseline = exp["baseline"]
        if len(set(names := [t["name"] for t in exp["tests"]])) != len(names):
            raise ConfigError(f"experiment.tests: test names must be unique, got {names}")
        base_tests = [Test(t["name"], t["n_prompt"], t["n_gen"], t.get("every", 1), t.get("repetitions"),
                           interleave=t.get("interleave"), models=self._test_models(exp, t.get("models")))
                      for t in exp["tests"]]
        for t in base_tests:
            if t.n_prompt == 0 and t.n_gen == 0:
                raise ConfigError(f"experiment.tests[{t.name}]: n_prompt and n_gen are both 0")
            if unknown := [m for m in t.models or () if m not in self.models]:
                raise ConfigError(f"experiment.tests[{t.name}].models: {', '.join(map(repr, unknown))} not among the "
                                  f"experiment's models ({', '.join(self.models)})")
        try:
            self.regimes = regimes.configured(exp)
            self.tests = {t.name: t for t in self._regime_variants(base_tests)}
        except regimes.RegimeError as e:
            raise ConfigError(str(e)) from None
        self.repetitions = exp["repetitions"]
        self.use_mmap = exp["use_mmap"]
        self.timeout_s = exp["timeout_s"]
        for e in self.engine_ids:
            targets = cfg["engines"][e].get("targets", [])
            try:
                check_prompt_settings(exp.get("prompts") or {}, e, targets)
                interleave.check_settings(exp["tests"], rounds_enabled=exp["rounds"]["enabled"],
                                          regimes_on=bool(self.regimes), engine_id=e, targets=targets)
            except ValueError as err:
                raise ConfigError(str(err)) from None
            for p in cfg["engines"][e].get("patches", []):
                if not (Path("patches") / p).is_file() and not Path(p).is_file():
                    raise ConfigError(f"engines.{e}.patches: {p!r} not found under patches/")

    # ---- pieces ------------------------------------------------------------------------------
    def _test_models(self, exp: dict[str, Any], which: str | list[str] | None) -> tuple[str, ...] | None:
        """A test's `models`: ids, or `experiment` (experiment.models) or `counterfactuals` (each
        counterfactual family with its base MoE); None: every model."""
        from edgemoe import counterfactuals as cf

        if which == "experiment":
            return tuple(exp["models"])
        if which == "counterfactuals":  # the base where the experiment has it
            return tuple(dict.fromkeys(m for b in exp.get("counterfactuals", []) for m in (b, *cf.family(b))
                                       if m in self.models))
        return tuple(which) if which else None

    def _regime_variants(self, tests: list[Test]) -> list[Test]:
        """The tests, or each once per configured regime; a cgroup is checked for before any job
        wherever a cell of this host would need one."""
        if self.device is not None and (self.regimes or self.device.emulate_memory_bytes):
            regimes.check_host_supports("experiment.regimes.ceilings" if self.regimes else f"devices.{self.device_id}.emulate")
        return regimes.variants(tests, self.regimes) if self.regimes else tests

    def memory_regime(self, device_id: str, test: str) -> tuple[bool, int | None, bool]:
        """(in a cgroup, emulated bytes or None, use mmap) of one cell (edgemoe.regimes.cell_regime)."""
        return regimes.cell_regime(self.tests[test], self.devices[device_id], self.use_mmap)

    def _device(self, dev_id: str, p: dict[str, Any]) -> Device:
        threads = (os.cpu_count() or 1) if p["threads"] == "auto" else int(p["threads"])
        ceiling = p["memory_ceiling_gb"]
        ceiling_bytes = total_memory_bytes() if ceiling == "auto" else int(float(ceiling) * 1e9)
        emulate = None
        if "emulate" in p:
            try:
                regimes.check_ceiling(p["emulate"]["memory_gb"], f"devices.{dev_id}.emulate.memory_gb")
            except regimes.RegimeError as e:
                raise ConfigError(str(e)) from None
            emulate = int(float(p["emulate"]["memory_gb"]) * 1e9)
            ceiling_bytes = min(ceiling_bytes, emulate)  # what the device's cells can use
        return Device(dev_id, p["backend"], tuple(p["cmake_flags"]), threads, p["n_gpu_layers"],
                      ceiling_bytes, p["energy_sampler"], p["temperature"], p["description"],
                      float(p.get("cooldown_s", 0)), p.get("power_mode"), emulate)

    def _model_ids(self, exp: dict[str, Any]) -> list[str]:
        """experiment.models, then each counterfactual family and the sweep's members (canonical ids,
        each once: a sweep member equal to a family member is the same model and file)."""
        from edgemoe import counterfactuals as cf

        ids = list(exp["models"])
        for base in exp.get("counterfactuals", []):
            self._base_moe(base, "experiment.counterfactuals")
            ids += cf.family(base)
        if sweep := exp.get("sweep"):
            spec = self._base_moe(sweep["base"], "experiment.sweep.base")
            try:
                ids += cf.sweep(sweep["base"], spec, sweep["n_expert"], sweep["n_expert_used"], self.quants)
            except cf.DerivationError as e:
                raise ConfigError(f"experiment.sweep: {e}") from None
        return list(dict.fromkeys(ids))

    def _base_moe(self, base: str, key: str) -> ArchSpec:
        models = self.cfg["models"]
        if base not in models:
            raise ConfigError(f"{key}: unknown model {base!r}; allowed: {_choices(models)}")
        try:
            spec = ArchSpec.from_config(base, models[base]["spec"])
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
        if not spec.is_moe:
            raise ConfigError(f"{key}: {base!r} is dense: counterfactual twins and sweeps derive from an MoE model")
        return spec

    def _derived(self, model_id: str) -> Model:
        """A counterfactual twin: its base's seed and router skew, a derived spec, always twin weights
        (a counterfactual has no trained weights, whatever `weights` says)."""
        from edgemoe import counterfactuals as cf
        from edgemoe.twins import GENERATOR_VERSION

        base, _ = cf.split(model_id)
        base_spec = self._base_moe(base, f"experiment.models ({model_id})")
        try:
            spec = cf.derive(model_id, base_spec, self.quants)
        except cf.DerivationError as e:
            raise ConfigError(f"experiment.models: {e}") from None
        spec.check(model_id)
        twin = self.cfg["models"][base]["twin"]
        seed, skew = twin["seed"], twin.get("router_skew", 0)
        tag = f"twin-s{seed}-{content_hash([spec.to_config(), skew, GENERATOR_VERSION])[:8]}"
        family = "moe" if spec.is_moe else "dense"
        return Model(model_id, family, spec, "twin", tag, seed, None, None, None, derived_from=base, router_skew=skew)

    def _model(self, model_id: str) -> Model:
        models = self.cfg["models"]
        if "@" in model_id:
            return self._derived(model_id)
        if model_id not in models:
            raise ConfigError(f"experiment.models: unknown model {model_id!r}; allowed: {_choices(models)}")
        m = models[model_id]
        try:
            spec = ArchSpec.from_config(model_id, m["spec"])
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None
        if (m["family"] == "moe") != spec.is_moe:
            raise ConfigError(f"models.{model_id}.family: {m['family']!r} contradicts spec (n_expert={spec.n_expert})")
        weights = self.cfg["weights"]
        hf = m.get("hf") or {}
        if weights == "hf" and not hf:
            raise ConfigError(f"models.{model_id}.hf: weights=hf needs a repo and a pinned revision")
        if weights == "local" and not m.get("local"):
            raise ConfigError(f"models.{model_id}.local: weights=local needs a path")
        if weights == "local" and not Path(m["local"]).exists():
            raise ConfigError(f"models.{model_id}.local: {m['local']} does not exist")
        seed = m["twin"]["seed"]
        if weights == "twin":
            # A twin's identity is its spec, seed and generator: a change gets new files, never stale ones.
            from edgemoe.twins import GENERATOR_VERSION

            skew = m["twin"].get("router_skew", 0)
            tag = f"twin-s{seed}-{content_hash([m['spec'], skew, GENERATOR_VERSION])[:8]}"
        elif weights == "hf":
            tag = "hf-" + re.sub(r"[^A-Za-z0-9._-]", "_", hf["revision"])
            if not re.fullmatch(r"[0-9a-f]{40}", hf["revision"]):
                print(f"warning: models.{model_id}.hf.revision is {hf['revision']!r}, not a commit sha: the "
                      "commit it resolves to is recorded, but a later run may get another; pin a sha",
                      file=sys.stderr)
        else:
            tag = "local-" + content_hash(m["local"])[:8]
        return Model(model_id, m["family"], spec, weights, tag, seed, hf.get("repo"), hf.get("revision"),
                     m.get("local"), router_skew=m["twin"].get("router_skew", 0))

    # ---- paths (edgemoe.paths) ---------------------------------------------------------------
    def build_dir(self, variant: str) -> str:
        """variant: 'tools' (CPU build that quantizes) or a device id (the build its cells run)."""
        return paths.build_dir(self.engine_id, variant)

    def build_flags(self, variant: str) -> list[str]:
        if variant == "tools":
            return ["-DGGML_NATIVE=ON"]
        try:  # -DCMAKE_CUDA_ARCHITECTURES=auto: the GPU's own, from nvidia-smi
            return cuda.resolve_flags(list(self.devices[variant].cmake_flags), variant)
        except cuda.CudaError as e:
            raise ConfigError(str(e)) from None

    def weights_rule_input(self, model_id: str) -> dict[str, str]:
        """What makes a model's F16: nothing for a twin, the download for hf, the path for local."""
        m = self.models[model_id]
        if m.weights == "hf":
            return {"download": f"results/hf/{model_id}/{m.weights_tag}/download.json"}
        if m.weights == "local":
            return {"local": m.local_path}
        return {}

    def model_file(self, model_id: str, quant: str, ext: str = "gguf") -> str:
        return paths.model_file(model_id, self.models[model_id].weights_tag, quant, ext)

    def cell_dir(self, kind: str, device: str, model_id: str, quant: str) -> str:
        """results/<kind>/<device>/<engine>/<model>/<weights tag>/<quant>: kind = cells, profile, depth."""
        return paths.cell_dir(kind, device, self.engine_id, model_id, self.models[model_id].weights_tag, quant)

    def test_models(self, test: str) -> list[str]:
        """The models a test runs, in the experiment's order (a test's `models`, else all; depth and
        prompt tests: all)."""
        t = self.tests.get(test)
        return [m for m in self.models if t is None or t.models is None or m in t.models]

    def cells(self, device: str) -> list[str]:
        """Block design: one cell file per engine of the axis, test, model (of that test) and quant."""
        return [paths.cell_file(device, e, m, self.models[m].weights_tag, q, t) for e in self.engine_ids
                for m in self.models for q in self.quants for t in self.tests if m in self.test_models(t)]

    def profile_cells(self, device: str) -> list[str]:
        if not self.cfg.get("profiling", {}).get("enabled"):
            return []
        # Registry models only: where the original MoE's decode time goes; its counterfactuals' FFN is the point.
        return [f"{self.cell_dir('profile', device, m, q)}/profile.jsonl" for m, model in self.models.items()
                if model.derived_from is None for q in self.quants]

    def depths(self) -> list[int]:
        """The configured depths, capped so that every model's context holds the prompt and the
        measured tokens (edgemoe-profile asks for one slot more; OLMoE's 4096 caps 4096 at
        4096 - n_gen - 1): the same depths for all models, so that ratios compare like with like."""
        d = self.cfg.get("depth", {})
        cap = min(m.spec.context_length for m in self.models.values()) - d["n_gen"] - 1
        return sorted({min(x, cap) for x in d["depths"]})

    def depth_tests(self) -> list[str]:
        """Every (depth, KV cache type, method) the config asks for, as test names (edgemoe.depth)."""
        from edgemoe.depth import test_name

        d = self.cfg.get("depth", {})
        return [test_name(depth, c, meth) for c in d.get("cache_types", ["f16"]) for meth in d.get("methods", ["auto"])
                for depth in self.depths()]

    def prompt_tests(self) -> list[str]:
        """The prompt-driven cell's test name (edgemoe/prompt_cells.py), when experiment.prompts is on."""
        from edgemoe.prompt_cells import prompt_test_name

        pr = self.cfg["experiment"].get("prompts") or {}
        return [prompt_test_name(pr["set"], pr["n_gen"])] if pr.get("enabled") else []

    def prompt_cells(self, device: str) -> list[str]:
        """Block design: one prompt cell per model and quant (rounds: inside the rounds)."""
        return [f"{self.cell_dir('prompts', device, m, q)}/{t}.jsonl" for m in self.models for q in self.quants
                for t in self.prompt_tests()]

    def depth_cells(self, device: str) -> list[str]:
        if not self.cfg.get("depth", {}).get("enabled"):
            return []
        return [f"{self.cell_dir('depth', device, m, q)}/{t}.jsonl" for m in self.models for q in self.quants
                for t in self.depth_tests()]

    def other_device_records(self) -> list[str]:
        """Records of this experiment's cells from other devices, already on disk (merged, never rerun)."""
        return [p for d in self.devices if d != self.device_id
                for p in self.cells(d) + self.profile_cells(d) + self.depth_cells(d) + self.prompt_cells(d)
                if Path(p).is_file()]
