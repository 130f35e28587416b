"""The sampler a config names (tegrastats, powermetrics, rapl, nvml, none, or auto), built so that
a counter this host lacks becomes a NullSampler saying why: a missing measurement is reported as
missing, never as 0.

- TegrastatsSampler (samplers_process): Jetson ``tegrastats`` (VDD_IN input power, rails, temps, RAM).
- PowermetricsSampler (samplers_process): macOS ``powermetrics`` (an *estimate* of SoC power; root).
- RaplSampler (samplers_polling): Linux powercap RAPL energy counters (CPU package energy).
- NvmlSampler (samplers_polling): NVIDIA NVML via ``pynvml`` if installed (GPU energy/power, memory).
- NullSampler (telemetry, with the Sampler interface): no counter; records why.
"""

from __future__ import annotations

from typing import Any

from edgemoe.samplers_polling import NvmlSampler, RaplSampler
from edgemoe.samplers_process import PowermetricsSampler, TegrastatsSampler
from edgemoe.telemetry import NullSampler, Sampler, SamplerUnavailable

__all__ = ["SAMPLER_KINDS", "make_sampler"]


SAMPLER_KINDS: dict[str, type[Sampler]] = {
    "tegrastats": TegrastatsSampler,
    "powermetrics": PowermetricsSampler,
    "rapl": RaplSampler,
    "nvml": NvmlSampler,
    "none": NullSampler,
}
_AUTO_ORDER = ("tegrastats", "powermetrics", "nvml", "rapl")


def make_sampler(kind: str | None, *, strict: bool = False, **opts: Any) -> Sampler:
    """Build a sampler from a config value: tegrastats, powermetrics, rapl, nvml, none, or auto.

    ``opts`` go to the sampler's constructor (e.g. ``interval_ms``, ``executable``, ``root``).
    When the chosen counter is unavailable, returns a :class:`NullSampler` whose ``reason`` says
    why (so records say "missing: ..."), or raises :class:`SamplerUnavailable` if ``strict``.
    ``auto`` picks the first available of tegrastats, powermetrics, nvml, rapl.
    """
    k = (kind or "none").strip().lower()
    if k in ("none", "null", "off", ""):
        return NullSampler(reason="energy sampling disabled in config")
    if k == "auto":
        reasons = []
        for cand in _AUTO_ORDER:
            ok, why = SAMPLER_KINDS[cand].available()
            if ok:
                return SAMPLER_KINDS[cand](**opts)
            reasons.append(f"{cand}: {why}")
        msg = "no energy counter found (" + "; ".join(reasons) + ")"
        if strict:
            raise SamplerUnavailable(msg)
        return NullSampler(reason=msg)
    if k not in SAMPLER_KINDS:
        raise ValueError(f"unknown sampler kind {kind!r}; expected one of {sorted(SAMPLER_KINDS)} or auto")
    sampler = SAMPLER_KINDS[k](**opts)
    ok, why = sampler.check()
    if not ok:
        if strict:
            raise SamplerUnavailable(f"{k}: {why}")
        return NullSampler(reason=f"{k} unavailable: {why}")
    return sampler
