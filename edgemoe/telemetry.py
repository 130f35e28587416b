"""The reading every sampler returns and the interface every sampler implements, apart from any
device, so that the samplers, the energy math and the thermal summary share them without importing
each other.

Readings are stamped with ``time.monotonic_ns()`` at reception: the clock the benchmark runner
takes its windows with (idle baseline, prompt processing, generation), so that the windows can be
integrated afterwards.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

__all__ = ["Sample", "SamplerUnavailable", "Sampler", "NullSampler"]


@dataclass
class Sample:
    """One reading.

    ``watts`` is the total power of the rail/domain the sampler measures (its ``what``), or None.
    ``energy_j`` is set only by cumulative-energy counters (RAPL, NVML total energy): joules since
    the sampler started, wrap-corrected and monotonic; energy over a window then uses counter
    differences instead of integrating ``watts``.
    """

    t_ns: int
    watts: float | None = None
    rails: dict[str, float] = field(default_factory=dict)
    temps_c: dict[str, float] = field(default_factory=dict)
    ram_used_bytes: int | None = None
    gpu_mem_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    energy_j: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MAX_WARNINGS = 8
MAX_UNPARSED = 3


def shorten(text: str, limit: int = 160) -> str:
    """One line of at most ``limit`` characters (multi-line text joined with " | ")."""
    one = " | ".join(ln.strip() for ln in text.splitlines() if ln.strip())
    return one if len(one) <= limit else one[: limit - 3] + "..."


class SamplerUnavailable(RuntimeError):
    """Raised by :func:`make_sampler` with ``strict=True`` when the counter cannot be used."""


def system_ram_used() -> int | None:
    """System RAM in use (total - available), via psutil if importable, else /proc/meminfo."""
    try:
        import psutil  # noqa: PLC0415

        vm = psutil.virtual_memory()
        return int(vm.total - vm.available)
    except Exception:  # noqa: BLE001
        pass
    try:
        info: dict[str, int] = {}
        with open("/proc/meminfo") as f:
            for line in f:
                k, v = line.split(":", 1)
                info[k] = int(v.split()[0]) * 1024
        return info["MemTotal"] - info["MemAvailable"]
    except Exception:  # noqa: BLE001
        return None


class Sampler:
    """Common interface. Use ``start()`` ... ``stop() -> list[Sample]``, or as a context manager
    (then read ``.samples``). ``available()`` is a classmethod returning ``(ok, reason)``;
    ``check()`` asks the same of this instance's configuration (e.g. its executable)."""

    name: str = "sampler"
    what: str = ""

    def __init__(self, interval_ms: float = 100, *, clock: Callable[[], int] = time.monotonic_ns):
        if interval_ms <= 0:
            raise ValueError("interval_ms must be > 0")
        self.interval_ms = float(interval_ms)
        self.clock = clock
        self.samples: list[Sample] = []
        self.error: str | None = None
        self.n_unparsed = 0
        self.warnings: list[str] = []  # named, de-duplicated: what a cell should say about its counter
        self.unparsed_lines: list[str] = []  # the first readings not understood, shortened
        self.problem: str | None = None  # the first of them, as "<tool> line not understood ...: <line>"
        self._kinds: set[str | None] = set()
        self.started_ns: int | None = None
        self.stopped_ns: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def available(cls, **opts: Any) -> tuple[bool, str]:
        raise NotImplementedError

    def check(self) -> tuple[bool, str]:
        return type(self).available()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> list[Sample]:
        raise NotImplementedError

    def snapshot(self) -> list[Sample]:
        """Samples so far (while running)."""
        with self._lock:
            return list(self.samples)

    def describe(self) -> dict[str, Any]:
        return {
            "sampler": self.name,
            "what": self.what,
            "interval_ms": self.interval_ms,
            "n_samples": len(self.samples),
            "error": self.error,
            "n_unparsed": self.n_unparsed,
            "problem": self.problem,
            "warnings": list(self.warnings),
        }

    def energy_reason(self, reason: str | None) -> str | None:
        """Why a cell's energy is missing: the first reading this sampler did not understand, when
        there was one (the energy module's own reason, e.g. "no power or energy readings", after
        it in brackets), else ``reason`` unchanged."""
        if self.problem:
            return f"{self.problem} [{reason}]" if reason else self.problem
        return reason

    def _reset_diagnostics(self) -> None:
        self.error = None
        self.n_unparsed = 0
        self.warnings, self.unparsed_lines, self.problem = [], [], None
        self._kinds = set()

    def _warn(self, msg: str) -> None:
        if msg not in self.warnings and len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(msg)

    def _not_understood(self, text: str, detail: str | None = None, what: str = "line") -> None:
        """Count a reading the parser did not (fully) understand; keep the first few and name the
        first of each kind (``detail``) in ``warnings``."""
        self.n_unparsed += 1
        short = shorten(text)
        if len(self.unparsed_lines) < MAX_UNPARSED:
            self.unparsed_lines.append(short)
        msg = f"{self.name} {what} not understood" + (f" ({detail})" if detail else "") + f": {short}"
        if self.problem is None:
            self.problem = msg
        if detail not in self._kinds:
            self._kinds.add(detail)
            self._warn(msg)

    def _append(self, s: Sample) -> None:
        with self._lock:
            self.samples.append(s)

    def __enter__(self) -> "Sampler":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(interval_ms={self.interval_ms:g})"


class NullSampler(Sampler):
    """No counter. ``reason`` says why; ``stop()`` returns []."""

    name = "none"
    what = "nothing (no counter)"

    def __init__(self, reason: str = "no sampler configured", interval_ms: float = 100, **_: Any):
        super().__init__(interval_ms)
        self.reason = reason
        self.error = reason

    @classmethod
    def available(cls, **opts: Any) -> tuple[bool, str]:
        return True, "always available (measures nothing)"

    def start(self) -> None:
        self.started_ns = self.clock()

    def stop(self) -> list[Sample]:
        self.stopped_ns = self.clock()
        return []

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["reason"] = self.reason
        return d

