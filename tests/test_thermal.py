"""Tests for edgemoe.thermal: peak temperature (preferred sensors, bogus ones ignored) and the
throttle summary."""

from __future__ import annotations

from edgemoe.telemetry import Sample
from edgemoe.thermal import peak_temperature, throttle_summary


def test_peak_temperature_and_throttle():
    a = Sample(0, temps_c={"cpu": 50.0, "tj": 52.0, "pmic": 100.0}, extra={"gr3d_freq_mhz": 621})
    b = Sample(1, temps_c={"cpu": 60.0, "tj": 61.0}, extra={"gr3d_freq_mhz": 306})
    assert peak_temperature([a, b]) == (61.0, "tj")
    c = Sample(0, temps_c={"pmic": 100.0, "cpu": 40.0, "gpu_x": 45.0})
    assert peak_temperature([c]) == (45.0, "gpu_x")
    v, why = peak_temperature([Sample(0)])
    assert v is None and why
    t = throttle_summary([a, b])
    assert t["gpu_freq_mhz_min"] == 306 and t["gpu_freq_mhz_max"] == 621
    pm = [Sample(0, extra={"thermal_pressure": "Nominal"}), Sample(1, extra={"thermal_pressure": "Heavy"})]
    assert throttle_summary(pm)["thermal_pressure_worst"] == "Heavy"
