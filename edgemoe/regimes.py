"""The memory regime of a cell: an emulated memory ceiling and the weight-loading mode.

A host with memory to spare never reaches the regime the study is about (an 8 GB device whose
model does not fit), so a cell can run under an emulated ceiling (edgemoe/memcg.py: a memory
cgroup that counts the page cache, the model's pages evicted first). Two ways to ask:

- `experiment.regimes: {ceilings: [host, 8, 4, 2], load_modes: [mmap, no-mmap]}`: every test runs
  once per ceiling and load mode, as a test variant named `<test>-<ceiling>-<mode>` (`tg32-4g-mmap`,
  `tg32-host-nommap`), so rounds, records and estimates treat each as a test of its own;
- a device profile's `emulate: {memory_gb: 8}`: every cell of that device runs under 8 GB ("what
  would an 8 GB device do?"); `host` in the ceilings list then means that emulated memory.

Records carry `memory_emulated_bytes` and `use_mmap`; the analysis reads the regime from them.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

# llama-bench with no weights resident was killed at 64 MiB and ran at 128 MiB here (OLMoE and
# Llama-3.2-1B twins, tg32, mmap on); below this the ceiling measures the harness, not the model.
MIN_CEILING_GB = 0.25
MODES = {"mmap": True, "no-mmap": False}
_VARIANT = re.compile(r"^(?P<test>.+)-(?P<ceiling>host|\d+(?:p\d+)?g)-(?P<mode>mmap|nommap)$")


@dataclass(frozen=True)
class Regime:
    ceiling_gb: float | None  # None: the host's (or the device's emulated) memory
    use_mmap: bool

    @property
    def label(self) -> str:
        return "host" if self.ceiling_gb is None else f"{self.ceiling_gb:g}g".replace(".", "p")

    @property
    def mode(self) -> str:
        return "mmap" if self.use_mmap else "nommap"


def variant_name(test: str, regime: Regime) -> str:
    return f"{test}-{regime.label}-{regime.mode}"


def parse_variant(name: str) -> tuple[str, Regime] | None:
    """(base test, regime) of a variant name; None for a plain test."""
    m = _VARIANT.match(name)
    if not m:
        return None
    c = m["ceiling"]
    return m["test"], Regime(None if c == "host" else float(c[:-1].replace("p", ".")), m["mode"] == "mmap")


class RegimeError(ValueError):
    """A ceiling that cannot be emulated (the message names the config key)."""


def configured(exp_cfg: dict[str, Any]) -> list[Regime]:
    """The experiment's regimes (ceilings x load modes), [] when off; checks each ceiling."""
    r = exp_cfg.get("regimes") or {}
    ceilings = r.get("ceilings") or []
    for i, c in enumerate(ceilings):
        check_ceiling(c, f"experiment.regimes.ceilings[{i}]")
    return [Regime(None if c == "host" else float(c), MODES[mode])
            for c in ceilings for mode in r.get("load_modes", list(MODES))]


def variants(tests: list, regimes: list[Regime]) -> list:
    """Each test (edgemoe.config.Test) once per regime, named variant_name(test, regime)."""
    return [dataclasses.replace(t, name=variant_name(t.name, r), base=t.name, in_cgroup=True, use_mmap=r.use_mmap,
                                ceiling_bytes=None if r.ceiling_gb is None else int(r.ceiling_gb * 1e9))
            for t in tests for r in regimes]


def cell_regime(test, device, default_mmap: bool) -> tuple[bool, int | None, bool]:
    """(in a cgroup, emulated bytes or None, use mmap) of one cell: the test's regime, else the
    device's emulated memory (`emulate: {memory_gb}`), else the host's with experiment.use_mmap."""
    use_mmap = default_mmap if test.use_mmap is None else test.use_mmap
    if test.in_cgroup:
        return True, test.ceiling_bytes if test.ceiling_bytes is not None else device.emulate_memory_bytes, use_mmap
    return device.emulate_memory_bytes is not None, device.emulate_memory_bytes, use_mmap


def check_ceiling(gb: Any, key: str) -> None:
    if gb != "host" and float(gb) < MIN_CEILING_GB:
        raise RegimeError(f"{key}: {gb} GB is below the benchmark process's own minimum ({MIN_CEILING_GB} GB: "
                          "llama-bench without any weights resident is killed at 64 MiB); use a larger ceiling")


def check_host_supports(key: str) -> None:
    """A named error, before any job, where this host has no usable memory cgroup."""
    from edgemoe import memcg

    try:
        memcg.probe()
    except memcg.CeilingUnavailable as e:
        raise RegimeError(f"{key}: cannot emulate a memory ceiling on this host: {e}") from None


def regime_columns(runs) -> Any:
    """Per (device, test) of the run table: base test, ceiling label, emulated GB (host: the
    host's memory, where a log axis puts it) and load mode, read from the records themselves."""
    import pandas as pd

    rows = []
    for (device, test), g in runs.groupby(["device", "test"], sort=False):
        parsed = parse_variant(test)
        emulated = g["memory_emulated_bytes"].dropna() if "memory_emulated_bytes" in g else pd.Series(dtype=float)
        if parsed is None and emulated.empty:
            continue
        base, regime = parsed if parsed else (test, Regime(None, bool(g["use_mmap"].iloc[0])))
        gb = float(emulated.iloc[0]) / 1e9 if not emulated.empty else float(g["host_memory_bytes"].iloc[0]) / 1e9
        rows.append({"device": device, "test": test, "base_test": base,
                     "ceiling": regime.label if parsed else f"{gb:g} GB (device)",
                     "ceiling_gb": gb, "emulated": not emulated.empty, "load_mode": MODES_LABEL[bool(g["use_mmap"].iloc[0])]})
    return pd.DataFrame(rows, columns=["device", "test", "base_test", "ceiling", "ceiling_gb", "emulated", "load_mode"])


MODES_LABEL = {True: "mmap", False: "no-mmap"}
