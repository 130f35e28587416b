"""The resolved experiment's value types (edgemoe.config makes them from the checked config): a
device profile, a model with its weights' identity, a test; and the content hash that names
designs and twins by what they are."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from edgemoe.architectures import ArchSpec


@dataclass(frozen=True)
class Device:
    id: str
    backend: str
    cmake_flags: tuple[str, ...]
    threads: int
    n_gpu_layers: int
    memory_ceiling_bytes: int
    energy_sampler: str
    temperature: str
    description: str
    cooldown_s: float = 0.0
    power_mode: str | None = None
    emulate_memory_bytes: int | None = None  # `emulate: {memory_gb}`: every cell in a cgroup of this size


@dataclass(frozen=True)
class Model:
    id: str
    family: str
    spec: ArchSpec
    weights: str  # twin | hf | local
    weights_tag: str  # path component that names the weights' identity
    twin_seed: int | None
    hf_repo: str | None
    hf_revision: str | None
    local_path: str | None
    derived_from: str | None = None  # a counterfactual twin (edgemoe.counterfactuals): its base model
    router_skew: float = 0.0  # twins: the router skew knob

    @property
    def spec_config(self) -> dict[str, Any]:
        """The `spec:` block the model's files are made from (derived for counterfactuals)."""
        return self.spec.to_config()

    @property
    def total_params(self) -> int:
        return self.spec.total_params()

    @property
    def active_params(self) -> int:
        return self.spec.active_params()


@dataclass(frozen=True)
class Test:
    name: str
    n_prompt: int
    n_gen: int
    every: int = 1  # rounds design: in every Nth counted round
    repetitions: int | None = None  # rounds design: this test's llama-bench -r (None: rounds.repetitions)
    # experiment.regimes (edgemoe/regimes.py): a variant of `base` under an emulated ceiling
    base: str | None = None
    in_cgroup: bool = False
    ceiling_bytes: int | None = None  # None: the device's memory (its emulated one, if any)
    use_mmap: bool | None = None  # None: experiment.use_mmap
    interleave: int | None = None  # tokens per turn: every model's cell in one process (edgemoe/interleave.py)
    models: tuple[str, ...] | None = None  # the experiment's models this test runs (None: all of them)

    def __str__(self) -> str:
        # A rounds design's identity hashes this: a plain test keeps the form it had before regimes
        # existed, so that designs (and other devices' rounds found by design id) stay the same.
        if not self.in_cgroup and not self.interleave and self.models is None:
            return (f"Test(name={self.name!r}, n_prompt={self.n_prompt!r}, n_gen={self.n_gen!r}, "
                    f"every={self.every!r}, repetitions={self.repetitions!r})")
        return repr(self)


def content_hash(obj: Any) -> str:
    """sha256 of a JSON-able identity (dataclasses and other objects by their str)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


__all__ = ["Device", "Model", "Test", "content_hash"]
