"""Tests for edgemoe.energy: energy over a window on known power traces, missing cases, and
joules per token with and without an idle baseline."""

from __future__ import annotations

import pytest

from edgemoe.energy import energy_joules, idle_baseline_watts, joules_per_token
from edgemoe.telemetry import Sample


def _trace(points):  # [(t_s, watts)] -> samples
    return [Sample(t_ns=int(round(t * 1e9)), watts=w) for t, w in points]


def test_energy_trapezoid_known_answer():
    # ramp 0 W at t=0 to 10 W at t=1, then constant 10 W to t=2
    tr = _trace([(0.0, 0.0), (0.5, 5.0), (1.0, 10.0), (1.5, 10.0), (2.0, 10.0)])
    assert energy_joules(tr, 0, 2_000_000_000).joules == pytest.approx(5.0 + 10.0)
    # window clipped mid-segment: [0.25, 1.75] = ramp from 2.5 W (0.25..1: 0.75 s avg 6.25) + 7.5 J
    e = energy_joules(tr, 250_000_000, 1_750_000_000)
    assert e.joules == pytest.approx(0.75 * 6.25 + 7.5)
    assert e.method == "trapezoid" and e.n_samples == 3
    assert e.mean_watts == pytest.approx(e.joules / 1.5)


def test_energy_missing_cases():
    tr = _trace([(0.0, 5.0), (0.1, 5.0), (0.2, 5.0)])
    e = energy_joules(tr, 50_000_000, 60_000_000)
    assert e.missing and "too few samples" in e.reason and e.joules is None
    e = energy_joules(tr, 0, 2_000_000_000)
    assert e.missing and "not covered" in e.reason
    e = energy_joules([Sample(t_ns=0), Sample(t_ns=10)], 0, 10)
    assert e.missing and "no power" in e.reason
    j = joules_per_token([], (0, 1_000_000_000), 10, 5.0)
    assert j.status == "missing" and j.raw_j_per_token is None and j.net_j_per_token is None
    assert j.to_record()["energy_missing_reason"] == "no power or energy readings"
    j = joules_per_token(tr, (0, 200_000_000), 0, 5.0)
    assert j.missing and "no tokens" in j.reason


def test_joules_per_token_and_idle():
    idle = _trace([(t / 10, 5.0 + (0.5 if t % 2 else -0.5)) for t in range(10)])
    assert idle_baseline_watts(idle) == pytest.approx(5.0)
    assert idle_baseline_watts([]) is None
    gen = _trace([(1.0 + t / 10, 9.0) for t in range(21)])  # 9 W for 2 s
    j = joules_per_token(idle + gen, (1_000_000_000, 3_000_000_000), 40, 5.0)
    assert j.status == "ok" and j.method == "trapezoid"
    assert j.energy_j == pytest.approx(18.0)
    assert j.raw_j_per_token == pytest.approx(18.0 / 40)
    assert j.net_j_per_token == pytest.approx((18.0 - 10.0) / 40)
    j2 = joules_per_token(gen, (1_000_000_000, 3_000_000_000), 40, None)
    assert j2.status == "ok" and j2.net_j_per_token is None and j2.net_reason == "no idle baseline"
