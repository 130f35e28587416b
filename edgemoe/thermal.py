"""Peak temperature and signs of throttling over a run, from samples of any sampler: what says
whether a cell ran on a hot or slowed-down device.
"""

from __future__ import annotations

from typing import Any, Iterable

from edgemoe.telemetry import Sample

__all__ = ["peak_temperature", "throttle_summary"]

# Readings that are not temperatures: PMIC@100C on Jetson Nano is a constant. (Sensors that are off
# read -256 C; the tegrastats parser drops them.)
_BOGUS_TEMP_KEYS = frozenset({"pmic"})

# Sensors that summarise the hottest point, best first: Jetson junction, NVML GPU, x86 package.
_PREFERRED_TEMPS = ("tj", "gpu", "x86_pkg_temp")


def peak_temperature(samples: Iterable[Sample]) -> tuple[float | None, str]:
    """Peak temperature over the samples and its source sensor.

    Uses the first preferred sensor present (``tj`` on Jetson, ``gpu`` from NVML, RAPL's
    ``x86_pkg_temp``), else the hottest of all sensors (ignoring ``pmic``, a constant on Jetson
    Nano). Returns ``(None, reason)`` when no sample has a temperature.
    """
    samples = list(samples)
    keys = {k for s in samples for k in s.temps_c if k.lower() not in _BOGUS_TEMP_KEYS}
    if not keys:
        return None, "no temperature readings"
    for k in _PREFERRED_TEMPS:
        if k in keys:
            return max(s.temps_c[k] for s in samples if k in s.temps_c), k
    best: tuple[float, str] | None = None
    for s in samples:
        for k, v in s.temps_c.items():
            if k in keys and (best is None or v > best[0]):
                best = (v, k)
    assert best is not None
    return best


_PRESSURE_ORDER = ["Nominal", "Moderate", "Heavy", "Trapping", "Sleeping"]


def throttle_summary(samples: Iterable[Sample]) -> dict[str, Any]:
    """Signs of throttling over a run: min/max clocks (Jetson CPU/GPU/EMC, NVML SM), OR of NVML
    throttle-reason bits, worst macOS thermal pressure. Keys appear only when data exists."""
    samples = list(samples)
    out: dict[str, Any] = {}

    def span(key: str, vals: list[float]) -> None:
        if vals:
            out[f"{key}_min"] = min(vals)
            out[f"{key}_max"] = max(vals)

    span("gpu_freq_mhz", [s.extra["gr3d_freq_mhz"] for s in samples if "gr3d_freq_mhz" in s.extra])
    span("emc_freq_mhz", [s.extra["emc_freq_mhz"] for s in samples if "emc_freq_mhz" in s.extra])
    span(
        "cpu_freq_mhz",
        [max(f for f in s.extra["cpu_freq_mhz"] if f is not None) for s in samples
         if any(f is not None for f in s.extra.get("cpu_freq_mhz", []))],
    )
    span("sm_clock_mhz", [s.extra["sm_clock_mhz"] for s in samples if "sm_clock_mhz" in s.extra])
    reasons = [s.extra["throttle_reasons"] for s in samples if "throttle_reasons" in s.extra]
    if reasons:
        bits = 0
        for r in reasons:
            bits |= int(r)
        out["nvml_throttle_reasons_or"] = bits
    pressures = [s.extra["thermal_pressure"] for s in samples if "thermal_pressure" in s.extra]
    if pressures:
        out["thermal_pressure_worst"] = max(
            pressures, key=lambda p: _PRESSURE_ORDER.index(p) if p in _PRESSURE_ORDER else -1
        )
    return out
