"""Energy over a time window and joules per token, from samples of any sampler.

Missing is always reported as missing with a reason (``joules`` None), never as 0, so that a host
without a counter cannot pass for one that used no energy.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from edgemoe.telemetry import Sample

__all__ = ["EnergyResult", "JoulesPerToken", "energy_joules", "idle_baseline_watts", "joules_per_token"]


@dataclass(frozen=True)
class EnergyResult:
    """Energy over a window, or missing with a reason (``joules`` is None then, never 0)."""

    joules: float | None
    window_s: float
    n_samples: int  # samples inside the window
    method: str  # "counter" (cumulative-energy differences), "trapezoid" (power), or "none"
    reason: str | None = None

    @property
    def missing(self) -> bool:
        return self.joules is None

    @property
    def mean_watts(self) -> float | None:
        if self.joules is None or self.window_s <= 0:
            return None
        return self.joules / self.window_s


def _median_step(ts: Sequence[int]) -> float | None:
    if len(ts) < 2:
        return None
    return float(statistics.median(b - a for a, b in zip(ts, ts[1:])))


def _interp(pts: Sequence[tuple[int, float]], t: float, extrapolate: bool) -> float:
    """Piecewise-linear value at t. Outside the range: extend the end segment (extrapolate) or
    hold the end value."""
    if t <= pts[0][0]:
        if extrapolate and len(pts) >= 2 and pts[1][0] != pts[0][0]:
            (t0, v0), (t1, v1) = pts[0], pts[1]
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
        return pts[0][1]
    if t >= pts[-1][0]:
        if extrapolate and len(pts) >= 2 and pts[-1][0] != pts[-2][0]:
            (t0, v0), (t1, v1) = pts[-2], pts[-1]
            return v1 + (v1 - v0) * (t - t1) / (t1 - t0)
        return pts[-1][1]
    lo, hi = 0, len(pts) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pts[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    (t0, v0), (t1, v1) = pts[lo], pts[hi]
    if t1 == t0:
        return v1
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def _integrate(pts: Sequence[tuple[int, float]], a: float, b: float) -> float:
    """Integral of the piecewise-linear interpolant (held constant beyond the ends) over [a, b],
    in value*ns."""
    knots = [float(a)] + [float(t) for t, _ in pts if a < t < b] + [float(b)]
    total = 0.0
    for x0, x1 in zip(knots, knots[1:]):
        total += (_interp(pts, x0, False) + _interp(pts, x1, False)) / 2.0 * (x1 - x0)
    return total


def energy_joules(
    samples: Iterable[Sample],
    t_start_ns: int,
    t_end_ns: int,
    *,
    min_samples: int = 2,
    edge_tolerance_ns: int | None = None,
) -> EnergyResult:
    """Energy over ``[t_start_ns, t_end_ns]`` (monotonic ns).

    Cumulative counters (samples with ``energy_j``): difference of the counter interpolated at the
    window edges. Otherwise: trapezoid over ``watts``, clipped at the edges by interpolation.
    The window may exceed the sampled span by at most ``edge_tolerance_ns`` on each side
    (default 1.5 x the median sample interval); the edge value is then held (power) or the end
    segment extended (counter). Missing, with a reason, when there is no reading, fewer than
    ``min_samples`` samples inside the window, or the window is not covered.
    """
    window_s = (t_end_ns - t_start_ns) / 1e9
    if t_end_ns <= t_start_ns:
        return EnergyResult(None, window_s, 0, "none", "empty or inverted window")
    samples = sorted(samples, key=lambda s: s.t_ns)
    epts = [(s.t_ns, s.energy_j) for s in samples if s.energy_j is not None]
    ppts = [(s.t_ns, s.watts) for s in samples if s.watts is not None]
    if len(epts) >= 2:
        pts, method = epts, "counter"
    elif ppts:
        pts, method = ppts, "trapezoid"
    else:
        return EnergyResult(None, window_s, 0, "none", "no power or energy readings")
    ts = [t for t, _ in pts]
    n_in = sum(1 for t in ts if t_start_ns <= t <= t_end_ns)
    step = _median_step(ts)
    tol = edge_tolerance_ns if edge_tolerance_ns is not None else (1.5 * step if step else 0)
    if t_start_ns < ts[0] - tol or t_end_ns > ts[-1] + tol:
        return EnergyResult(
            None,
            window_s,
            n_in,
            method,
            f"window not covered by samples (samples span {(ts[-1] - ts[0]) / 1e9:.3f} s; window "
            f"starts {(ts[0] - t_start_ns) / 1e9:+.3f} s before and ends "
            f"{(t_end_ns - ts[-1]) / 1e9:+.3f} s after it)",
        )
    if n_in < min_samples:
        return EnergyResult(
            None, window_s, n_in, method, f"too few samples in window ({n_in} < {min_samples})"
        )
    if method == "counter":
        joules = _interp(pts, t_end_ns, True) - _interp(pts, t_start_ns, True)
    else:
        joules = _integrate(pts, t_start_ns, t_end_ns) / 1e9
    return EnergyResult(joules, window_s, n_in, method)


def idle_baseline_watts(
    samples: Iterable[Sample],
    t_start_ns: int | None = None,
    t_end_ns: int | None = None,
    *,
    min_samples: int = 1,
) -> float | None:
    """Median power of the samples in ``[t_start_ns, t_end_ns]`` (default: all given samples,
    i.e. pass the pre-cell idle window's samples). None when fewer than ``min_samples`` readings.
    """
    ws = [
        s.watts
        for s in samples
        if s.watts is not None
        and (t_start_ns is None or s.t_ns >= t_start_ns)
        and (t_end_ns is None or s.t_ns <= t_end_ns)
    ]
    if len(ws) < max(1, min_samples):
        return None
    return float(statistics.median(ws))


@dataclass(frozen=True)
class JoulesPerToken:
    """J/token over a window. ``status`` is "ok" or "missing" (``reason`` says why); net values
    are None (``net_reason`` says why) when there is no idle baseline. Never 0 for missing."""

    status: str
    reason: str | None
    raw_j_per_token: float | None
    net_j_per_token: float | None
    energy_j: float | None
    net_energy_j: float | None
    idle_watts: float | None
    mean_watts: float | None
    window_s: float
    n_tokens: int
    n_samples: int
    method: str
    net_reason: str | None = None

    @property
    def missing(self) -> bool:
        return self.status != "ok"

    def to_record(self, prefix: str = "energy_") -> dict[str, Any]:
        """Flat dict for a results row."""
        return {
            f"{prefix}status": self.status,
            f"{prefix}missing_reason": self.reason if self.missing else self.net_reason,
            f"{prefix}j_per_token_raw": self.raw_j_per_token,
            f"{prefix}j_per_token_net": self.net_j_per_token,
            f"{prefix}joules": self.energy_j,
            f"{prefix}joules_net": self.net_energy_j,
            f"{prefix}idle_watts": self.idle_watts,
            f"{prefix}mean_watts": self.mean_watts,
            f"{prefix}window_s": self.window_s,
            f"{prefix}n_samples": self.n_samples,
            f"{prefix}method": self.method,
        }


def joules_per_token(
    samples: Iterable[Sample],
    gen_window: tuple[int, int],
    n_tokens: int,
    idle_watts: float | None,
    *,
    min_samples: int = 2,
    edge_tolerance_ns: int | None = None,
) -> JoulesPerToken:
    """Raw (E / n) and net ((E - idle_watts * window) / n) joules per token over ``gen_window``
    (``(t_start_ns, t_end_ns)``, monotonic). Net may be negative if idle was noisy; not clamped."""
    t0, t1 = gen_window
    window_s = (t1 - t0) / 1e9
    if n_tokens is None or n_tokens <= 0:
        return JoulesPerToken("missing", f"no tokens in window (n_tokens={n_tokens})",
                              None, None, None, None, idle_watts, None, window_s,
                              int(n_tokens or 0), 0, "none")
    e = energy_joules(samples, t0, t1, min_samples=min_samples, edge_tolerance_ns=edge_tolerance_ns)
    if e.missing:
        return JoulesPerToken("missing", e.reason, None, None, None, None, idle_watts, None,
                              window_s, n_tokens, e.n_samples, e.method)
    assert e.joules is not None
    raw = e.joules / n_tokens
    net = net_e = None
    net_reason = None
    if idle_watts is None or (isinstance(idle_watts, float) and math.isnan(idle_watts)):
        net_reason = "no idle baseline"
    else:
        net_e = e.joules - idle_watts * window_s
        net = net_e / n_tokens
    return JoulesPerToken("ok", None, raw, net, e.joules, net_e, idle_watts, e.mean_watts,
                          window_s, n_tokens, e.n_samples, e.method, net_reason)
