"""Samplers that run beside a benchmark process: power, temperature and memory over time.

Each sampler measures one quantity (its ``what``) and returns a list of :class:`Sample`s stamped
with ``time.monotonic_ns()`` at reception, so that windows taken with the same clock in the
benchmark runner (idle baseline, prompt processing, generation) can be integrated afterwards.

Samplers:

- :class:`TegrastatsSampler`: Jetson ``tegrastats`` (VDD_IN module input power, rails, temps, RAM).
- :class:`PowermetricsSampler`: macOS ``powermetrics`` (an *estimate* of SoC power; needs root).
- :class:`RaplSampler`: Linux powercap RAPL energy counters (CPU package energy).
- :class:`NvmlSampler`: NVIDIA NVML via ``pynvml`` if installed (GPU board energy/power, memory).
- :class:`NullSampler`: no counter; records why.

Energy math: :func:`energy_joules`, :func:`idle_baseline_watts`, :func:`joules_per_token`. A
missing measurement is always reported as missing with a reason, never as 0.

This module never imports Snakemake.
"""

from __future__ import annotations

import glob
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

__all__ = [
    "Sample",
    "SamplerUnavailable",
    "Sampler",
    "TegrastatsSampler",
    "PowermetricsSampler",
    "RaplSampler",
    "NvmlSampler",
    "NullSampler",
    "SAMPLER_KINDS",
    "make_sampler",
    "parse_tegrastats_line",
    "parse_powermetrics_text",
    "split_powermetrics_blocks",
    "parse_nvpmodel_query",
    "jetson_power_mode",
    "EnergyResult",
    "JoulesPerToken",
    "energy_joules",
    "idle_baseline_watts",
    "joules_per_token",
    "peak_temperature",
    "throttle_summary",
]

MIB = 1024 * 1024


# --------------------------------------------------------------------------------------------
# Sample
# --------------------------------------------------------------------------------------------


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


class SamplerUnavailable(RuntimeError):
    """Raised by :func:`make_sampler` with ``strict=True`` when the counter cannot be used."""


# --------------------------------------------------------------------------------------------
# Parsers (pure)
# --------------------------------------------------------------------------------------------

_TS_RE = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s")
_RAM_RE = re.compile(r"(?<!\S)RAM (\d+)/(\d+)MB")
_SWAP_RE = re.compile(r"(?<!\S)SWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?")
_CPU_RE = re.compile(r"(?<!\S)CPU \[([^\]]*)\]")
_EMC_RE = re.compile(r"(?<!\S)EMC_FREQ (\d+)%(?:@(\d+))?")
_GR3D_RE = re.compile(r"(?<!\S)GR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?")
_APE_RE = re.compile(r"(?<!\S)APE (\d+)(?!\S)")
_TEMP_RE = re.compile(r"(?<!\S)([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C(?!\S)")
# Rails: "VDD_IN 4824mW/4824mW" (JetPack 6), "VDD_IN 5000/5000" or "POM_5V_IN 2150/2150" (older).
# (?!\S) keeps "RAM 3452/7620MB" and "IRAM 0/252kB(...)" out.
_RAIL_RE = re.compile(r"(?<!\S)([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?!\S)")
# Rails that are the whole module/board input, best first.
TEGRA_INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
# Readings that are not temperatures: -256 C marks a sensor that is off; PMIC@100C on Jetson Nano
# is a constant.
_BOGUS_TEMP_KEYS = frozenset({"pmic"})


def parse_tegrastats_line(line: str) -> dict[str, Any] | None:
    """Parse one tegrastats line into Sample fields (all but ``t_ns``).

    Handles JetPack 6 as user and as root (``EMC_FREQ``, ``GR3D_FREQ 63%@[621]``), JetPack 5 and
    older (``VDD_IN 5000/5000``, ``POM_5V_IN 2150/2150``, no timestamp, ``GR3D_FREQ 0%@76``).
    ``watts`` is the first input rail found (VDD_IN, then POM_5V_IN), else the sum of all rails
    (AGX Orin / Xavier report no input rail); ``extra['watts_source']`` says which.
    Returns None if the line carries nothing tegrastats-like.
    """
    rails: dict[str, float] = {}
    rails_avg: dict[str, float] = {}
    for name, cur, avg in _RAIL_RE.findall(line):
        if name in ("RAM", "SWAP", "IRAM"):
            continue
        rails[name] = int(cur) / 1000.0
        rails_avg[name] = int(avg) / 1000.0

    ram = _RAM_RE.search(line)
    if not rails and ram is None:
        return None

    extra: dict[str, Any] = {}
    m = _TS_RE.match(line)
    if m:
        extra["timestamp"] = m.group(1)
    ram_used = None
    if ram:
        ram_used = int(ram.group(1)) * MIB
        extra["ram_total_bytes"] = int(ram.group(2)) * MIB
    m = _SWAP_RE.search(line)
    if m:
        extra["swap_used_bytes"] = int(m.group(1)) * MIB
        extra["swap_total_bytes"] = int(m.group(2)) * MIB
        if m.group(3) is not None:
            extra["swap_cached_bytes"] = int(m.group(3)) * MIB
    m = _CPU_RE.search(line)
    if m:
        loads: list[float | None] = []
        freqs: list[int | None] = []
        for entry in m.group(1).split(","):
            entry = entry.strip()
            em = re.fullmatch(r"(\d+)%(?:@(\d+))?", entry)
            if em:
                loads.append(float(em.group(1)))
                freqs.append(int(em.group(2)) if em.group(2) else None)
            else:  # "off" (core offline) or unknown
                loads.append(None)
                freqs.append(None)
        extra["cpu_load_pct"] = loads
        extra["cpu_freq_mhz"] = freqs
    m = _EMC_RE.search(line)
    if m:
        extra["emc_load_pct"] = float(m.group(1))
        if m.group(2):
            extra["emc_freq_mhz"] = int(m.group(2))
    m = _GR3D_RE.search(line)
    if m:
        extra["gr3d_load_pct"] = float(m.group(1))
        if m.group(2):
            fs = [int(x) for x in m.group(2).split(",") if x]
            if fs:
                extra["gr3d_freq_mhz"] = max(fs)
    m = _APE_RE.search(line)
    if m:
        extra["ape_freq_mhz"] = int(m.group(1))

    temps: dict[str, float] = {}
    for name, val in _TEMP_RE.findall(line):
        v = float(val)
        if v <= -256.0:  # sensor off
            continue
        temps[name.lower()] = v

    watts = None
    for name in TEGRA_INPUT_RAILS:
        if name in rails:
            watts = rails[name]
            extra["watts_source"] = name
            break
    else:
        if rails:
            watts = sum(rails.values())
            extra["watts_source"] = "sum of rails"
    if rails_avg:
        extra["rails_avg_w"] = rails_avg

    return {
        "watts": watts,
        "rails": rails,
        "temps_c": temps,
        "ram_used_bytes": ram_used,
        "gpu_mem_bytes": None,  # Jetson GPU shares system RAM
        "extra": extra,
    }


_PM_HEADER = "*** Sampled system activity"
_PM_POWER_RE = re.compile(r"^\s*(.+?) Power(?: \([^)]*\))?:\s*([\d.]+)\s*mW\s*$")
_PM_FREQ_RE = re.compile(r"^\s*(.+?) HW active frequency:\s*([\d.]+)\s*MHz")
_PM_RES_RE = re.compile(r"^\s*(.+?) HW active residency:\s*([\d.]+)%")
_PM_ELAPSED_RE = re.compile(r"\(([\d.]+)\s*ms elapsed\)")
_PM_PRESSURE_RE = re.compile(r"^\s*Current pressure level:\s*(\S+)")


def parse_powermetrics_text(block: str) -> dict[str, Any] | None:
    """Parse one powermetrics text sample (``--samplers cpu_power,gpu_power,thermal``).

    ``watts`` is an *estimate of SoC power* made by macOS: ``Combined Power (CPU + GPU + ANE)``
    when printed, else ``Package Power`` (older releases), else CPU + GPU + ANE summed.
    ``rails`` holds every ``<name> Power: N mW`` line (first occurrence wins: GPU Power appears in
    two sections on some releases), e.g. CPU, GPU, ANE, and per-cluster E/P0/P1 where printed.
    Returns None if the block has no power line.
    """
    rails: dict[str, float] = {}
    freqs: dict[str, float] = {}
    res: dict[str, float] = {}
    extra: dict[str, Any] = {"estimate": True}
    for line in block.splitlines():
        m = _PM_POWER_RE.match(line)
        if m:
            name = m.group(1).strip()
            rails.setdefault(name, float(m.group(2)) / 1000.0)
            continue
        m = _PM_FREQ_RE.match(line)
        if m:
            freqs.setdefault(m.group(1).strip(), float(m.group(2)))
            continue
        m = _PM_RES_RE.match(line)
        if m:
            res.setdefault(m.group(1).strip(), float(m.group(2)))
            continue
        m = _PM_PRESSURE_RE.match(line)
        if m:
            extra["thermal_pressure"] = m.group(1)
            continue
        m = _PM_ELAPSED_RE.search(line)
        if m and _PM_HEADER in line:
            extra["elapsed_ms"] = float(m.group(1))
            continue
        if line.startswith("Machine model:"):
            extra["machine_model"] = line.split(":", 1)[1].strip()
        elif line.startswith("OS version:"):
            extra["os_version"] = line.split(":", 1)[1].strip()
    if not rails:
        return None
    if "Combined" in rails:
        watts = rails.pop("Combined")
        extra["watts_source"] = "Combined Power"
    elif "Package" in rails:
        watts = rails.pop("Package")
        extra["watts_source"] = "Package Power"
    else:
        parts = [rails[k] for k in ("CPU", "GPU", "ANE") if k in rails]
        watts = sum(parts) if parts else None
        extra["watts_source"] = "sum of " + "+".join(k for k in ("CPU", "GPU", "ANE") if k in rails)
    if freqs:
        extra["freq_mhz"] = freqs
    if res:
        extra["active_residency_pct"] = res
    return {
        "watts": watts,
        "rails": rails,
        "temps_c": {},  # powermetrics prints no die temperatures on Apple silicon
        "ram_used_bytes": None,
        "gpu_mem_bytes": None,
        "extra": extra,
    }


def split_powermetrics_blocks(text: str) -> list[str]:
    """Split concatenated powermetrics text output into one string per sample."""
    blocks: list[list[str]] = []
    cur: list[str] = []
    for line in text.splitlines():
        if line.startswith(_PM_HEADER) and any(_PM_HEADER in x for x in cur):
            blocks.append(cur)
            cur = []
        cur.append(line)
    if cur:
        blocks.append(cur)
    return ["\n".join(b) for b in blocks if any(_PM_POWER_RE.match(x) for x in b)]


def parse_nvpmodel_query(text: str) -> dict[str, Any] | None:
    """Parse ``nvpmodel -q`` output (``NV Power Mode: 15W`` then the mode id on the next line).

    Returns ``{"name": "15W", "id": 0}`` (id None if absent) or None if no mode line is found.
    Warning lines such as ``NVPM WARN: fan mode is not set!`` are ignored.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^\s*NV Power Mode\s*:\s*(.+?)\s*$", line)
        if m:
            mode_id = None
            for nxt in lines[i + 1 :]:
                if nxt.strip():
                    if re.fullmatch(r"\s*\d+\s*", nxt):
                        mode_id = int(nxt)
                    break
            return {"name": m.group(1), "id": mode_id}
    return None


def jetson_power_mode(
    executable: str = "nvpmodel",
    *,
    tegra_release: str = "/etc/nv_tegra_release",
    timeout_s: float = 5.0,
) -> dict[str, Any] | None:
    """The Jetson power mode from ``nvpmodel -q``, or None when this is not a Jetson.

    On a Jetson whose query fails, returns ``{"name": None, "id": None, "error": ...}``.
    """
    exe = shutil.which(executable)
    if exe is None:
        if not os.path.exists(tegra_release):
            return None
        return {"name": None, "id": None, "error": f"{executable} not found"}
    try:
        cp = subprocess.run(
            [exe, "-q"], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"name": None, "id": None, "error": f"{executable} -q failed: {e}"}
    parsed = parse_nvpmodel_query(cp.stdout + "\n" + cp.stderr)
    if parsed is None:
        tail = (cp.stdout + cp.stderr).strip()[-200:]
        return {"name": None, "id": None, "error": f"{executable} -q rc={cp.returncode}: {tail}"}
    return parsed


# --------------------------------------------------------------------------------------------
# System helpers
# --------------------------------------------------------------------------------------------


def _system_ram_used() -> int | None:
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


# --------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------


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
        }

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


class _ProcessSampler(Sampler):
    """Runs a tool that prints readings to stdout; a thread reads lines and stamps them."""

    executable: str

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _on_line(self, t_ns: int, line: str) -> None:
        raise NotImplementedError

    def _on_eof(self) -> None:
        pass

    def check(self) -> tuple[bool, str]:
        return type(self).available(executable=self.executable)

    def start(self) -> None:
        if getattr(self, "_proc", None) is not None:
            raise RuntimeError(f"{self.name} sampler already started")
        self.samples = []
        self.error = None
        self._stderr = tempfile.TemporaryFile()
        cmd = self._command()
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL, bufsize=0
        )
        self.started_ns = self.clock()
        self._thread = threading.Thread(target=self._reader, name=f"{self.name}-reader", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        out = self._proc.stdout
        assert out is not None
        for raw in iter(out.readline, b""):
            t = self.clock()
            try:
                self._on_line(t, raw.decode("utf-8", "replace").rstrip("\r\n"))
            except Exception:  # noqa: BLE001 - one bad line must not end sampling
                self.n_unparsed += 1
        self._on_eof()

    def stop(self) -> list[Sample]:
        proc = getattr(self, "_proc", None)
        if proc is None:
            return list(self.samples)
        exited_early = proc.poll() is not None
        if not exited_early:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
        self._thread.join(timeout=3)
        self.stopped_ns = self.clock()
        if exited_early and proc.returncode not in (0, None):
            self._stderr.seek(0)
            tail = self._stderr.read().decode("utf-8", "replace").strip()[-300:]
            self.error = f"{self.executable} exited early with rc={proc.returncode}: {tail}"
        elif not self.samples:
            self._stderr.seek(0)
            tail = self._stderr.read().decode("utf-8", "replace").strip()[-300:]
            self.error = f"{self.executable} produced no parsable samples" + (
                f": {tail}" if tail else ""
            )
        self._stderr.close()
        if proc.stdout is not None:
            proc.stdout.close()
        self._proc = None
        return list(self.samples)


class TegrastatsSampler(_ProcessSampler):
    """Jetson ``tegrastats --interval N``: VDD_IN module input power, rails, temps, RAM, clocks.

    Needs the ``tegrastats`` binary (JetPack; runs as a normal user, root adds EMC/GR3D clocks).
    ``executable`` and ``extra_args`` are injectable (tests use a replaying stand-in).
    """

    name = "tegrastats"
    what = "VDD_IN module input power (tegrastats; POM_5V_IN on older Jetsons)"

    def __init__(
        self,
        interval_ms: float = 100,
        executable: str = "tegrastats",
        *,
        extra_args: Sequence[str] = (),
        clock: Callable[[], int] = time.monotonic_ns,
    ):
        super().__init__(interval_ms, clock=clock)
        self.executable = executable
        self.extra_args = list(extra_args)

    @classmethod
    def available(cls, executable: str = "tegrastats", **_: Any) -> tuple[bool, str]:
        exe = shutil.which(executable)
        if exe is None:
            return False, f"{executable!r} not found on PATH (not a Jetson, or JetPack missing)"
        return True, f"found {exe}"

    def _command(self) -> list[str]:
        return [self.executable, "--interval", str(int(round(self.interval_ms))), *self.extra_args]

    def _on_line(self, t_ns: int, line: str) -> None:
        fields = parse_tegrastats_line(line)
        if fields is None:
            if line.strip():
                self.n_unparsed += 1
            return
        self._append(Sample(t_ns=t_ns, **fields))


class PowermetricsSampler(_ProcessSampler):
    """macOS ``powermetrics`` text output: estimated SoC power (CPU + GPU + ANE), per part.

    Needs root: runs directly when root, else through ``sudo -n`` if that works without a
    password (a sudoers rule for powermetrics); otherwise unavailable.
    """

    name = "powermetrics"
    what = "estimated SoC power, CPU+GPU+ANE (powermetrics model; excludes DRAM, display, board)"

    def __init__(
        self,
        interval_ms: float = 250,
        executable: str = "powermetrics",
        *,
        samplers: str = "cpu_power,gpu_power,thermal",
        use_sudo: bool | None = None,
        extra_args: Sequence[str] = (),
        system_ram: bool = True,
        clock: Callable[[], int] = time.monotonic_ns,
    ):
        super().__init__(interval_ms, clock=clock)
        self.executable = executable
        self.samplers = samplers
        self.use_sudo = use_sudo
        self.extra_args = list(extra_args)
        self.system_ram = system_ram
        self._block: list[str] = []
        self._block_t: int | None = None

    @staticmethod
    def _is_root() -> bool:
        return hasattr(os, "geteuid") and os.geteuid() == 0

    @classmethod
    def available(cls, executable: str = "powermetrics", **_: Any) -> tuple[bool, str]:
        exe = shutil.which(executable)
        if exe is None:
            return False, f"{executable!r} not found (powermetrics exists only on macOS)"
        if cls._is_root():
            return True, f"found {exe}, running as root"
        try:
            cp = subprocess.run(
                ["sudo", "-n", exe, "-h"], capture_output=True, timeout=5, check=False
            )
            if cp.returncode == 0:
                return True, f"found {exe}, passwordless sudo works"
        except (OSError, subprocess.TimeoutExpired):
            pass
        return False, f"{exe} needs root: run as root or allow 'sudo -n {exe}' in sudoers"

    def _command(self) -> list[str]:
        cmd = [
            self.executable,
            "-i",
            str(int(round(self.interval_ms))),
            "--samplers",
            self.samplers,
            *self.extra_args,
        ]
        sudo = self.use_sudo if self.use_sudo is not None else not self._is_root()
        return ["sudo", "-n", *cmd] if sudo else cmd

    def _flush(self) -> None:
        if self._block and self._block_t is not None:
            fields = parse_powermetrics_text("\n".join(self._block))
            if fields is not None:
                if self.system_ram:
                    fields["ram_used_bytes"] = _system_ram_used()
                self._append(Sample(t_ns=self._block_t, **fields))
            else:
                self.n_unparsed += 1
        self._block = []
        self._block_t = None

    def _on_line(self, t_ns: int, line: str) -> None:
        if line.startswith(_PM_HEADER):
            self._flush()
        self._block.append(line)
        if line.strip():
            # powermetrics prints a whole sample at the end of its interval: stamp the block with
            # the reception of its last line, not with the next header (one interval later).
            self._block_t = t_ns

    def _on_eof(self) -> None:
        self._flush()

    def start(self) -> None:
        self._block, self._block_t = [], None
        super().start()


class _PollingSampler(Sampler):
    """Reads counters in-process on a fixed schedule (first reading at start, last at stop)."""

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _poll(self) -> Sample | None:
        raise NotImplementedError

    def sample_now(self) -> Sample | None:
        """Take one reading now and keep it (also usable without the thread, e.g. in tests)."""
        s = self._poll()
        if s is not None:
            self._append(s)
        return s

    def start(self) -> None:
        if getattr(self, "_thread", None) is not None:
            raise RuntimeError(f"{self.name} sampler already started")
        self.samples = []
        self.error = None
        self._open()
        self._stop_evt = threading.Event()
        self.started_ns = self.clock()
        self.sample_now()
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-poll", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        period = self.interval_ms / 1000.0
        nxt = time.monotonic() + period
        while not self._stop_evt.wait(max(0.0, nxt - time.monotonic())):
            try:
                self.sample_now()
            except Exception as e:  # noqa: BLE001
                self.n_unparsed += 1
                self.error = f"{type(e).__name__}: {e}"
            nxt += period
            now = time.monotonic()
            if nxt < now:  # fell behind: skip, don't burst
                nxt = now + period

    def stop(self) -> list[Sample]:
        th = getattr(self, "_thread", None)
        if th is None:
            return list(self.samples)
        self._stop_evt.set()
        th.join(timeout=5)
        self._thread = None
        try:
            self.sample_now()  # bracket the end of the last window
        except Exception as e:  # noqa: BLE001
            self.error = f"{type(e).__name__}: {e}"
        self.stopped_ns = self.clock()
        self._close()
        return list(self.samples)


class RaplSampler(_PollingSampler):
    """Linux powercap RAPL: ``<root>/intel-rapl:*/energy_uj`` (AMD Zen exposes it too).

    ``watts``/``energy_j`` are the sum of the ``package-*`` zones (psys when no package zone);
    ``rails`` has every zone incl. subzones (core, uncore, dram) as average watts over the last
    interval. Counter wrap is handled with ``max_energy_range_uj``. Needs read access to
    ``energy_uj`` (root-only on kernels since late 2020). Temperatures come from
    ``<thermal_root>/thermal_zone*/temp`` where readable.
    """

    name = "rapl"
    what = "RAPL CPU package energy (sockets incl. on-die parts; not DRAM/board)"

    def __init__(
        self,
        interval_ms: float = 100,
        *,
        root: str | os.PathLike = "/sys/class/powercap",
        thermal_root: str | os.PathLike | None = "/sys/class/thermal",
        system_ram: bool = True,
        clock: Callable[[], int] = time.monotonic_ns,
    ):
        super().__init__(interval_ms, clock=clock)
        self.root = Path(root)
        self.thermal_root = Path(thermal_root) if thermal_root is not None else None
        self.system_ram = system_ram
        self._zones: list[dict[str, Any]] | None = None

    @staticmethod
    def _discover(root: Path) -> list[dict[str, Any]]:
        zones = []
        for d in sorted(glob.glob(str(root / "intel-rapl:*"))):
            p = Path(d)
            if not (p / "energy_uj").exists():
                continue
            ident = p.name.split(":", 1)[1]  # "0" or "0:1"
            try:
                zname = (p / "name").read_text().strip()
            except OSError:
                zname = p.name
            try:
                max_uj = int((p / "max_energy_range_uj").read_text().strip())
            except (OSError, ValueError):
                max_uj = None
            top = ":" not in ident
            zones.append({"dir": p, "ident": ident, "zname": zname, "top": top, "max_uj": max_uj})
        # Label subzones with their parent: "package-0/core".
        tops = {z["ident"]: z["zname"] for z in zones if z["top"]}
        for z in zones:
            if z["top"]:
                z["label"] = z["zname"]
            else:
                parent = tops.get(z["ident"].split(":")[0], "?")
                z["label"] = f"{parent}/{z['zname']}"
        total = [z for z in zones if z["top"] and z["zname"].startswith("package")]
        if not total:
            total = [z for z in zones if z["top"] and z["zname"] == "psys"]
        if not total:
            total = [z for z in zones if z["top"]]
        for z in zones:
            z["in_total"] = z in total
        return zones

    @classmethod
    def available(cls, root: str | os.PathLike = "/sys/class/powercap", **_: Any) -> tuple[bool, str]:
        rootp = Path(root)
        if not sys.platform.startswith("linux") and str(root) == "/sys/class/powercap":
            return False, "RAPL via powercap exists only on Linux"
        zones = cls._discover(rootp)
        if not zones:
            return False, f"no intel-rapl:* zones with energy_uj under {rootp}"
        try:
            int((zones[0]["dir"] / "energy_uj").read_text().strip())
        except PermissionError:
            return False, f"{zones[0]['dir'] / 'energy_uj'} not readable (root-only on this kernel)"
        except (OSError, ValueError) as e:
            return False, f"cannot read {zones[0]['dir'] / 'energy_uj'}: {e}"
        return True, f"{len(zones)} RAPL zones under {rootp}"

    def check(self) -> tuple[bool, str]:
        return type(self).available(root=self.root)

    def _open(self) -> None:
        self._zones = self._discover(self.root)
        if not self._zones:
            raise SamplerUnavailable(f"no RAPL zones under {self.root}")
        self._prev: dict[str, int] | None = None
        self._acc = {z["label"]: 0.0 for z in self._zones}  # joules since start, per zone
        self._prev_t: int | None = None
        self._thermal = self._discover_thermal()

    def _discover_thermal(self) -> list[tuple[str, Path]]:
        out: list[tuple[str, Path]] = []
        if self.thermal_root is None:
            return out
        for d in sorted(glob.glob(str(self.thermal_root / "thermal_zone*"))):
            p = Path(d)
            try:
                ztype = (p / "type").read_text().strip()
                int((p / "temp").read_text().strip())
            except (OSError, ValueError):
                continue
            out.append((ztype, p / "temp"))
        return out

    def _poll(self) -> Sample | None:
        if self._zones is None:
            self._open()
        assert self._zones is not None
        t = self.clock()
        raw = {z["label"]: int((z["dir"] / "energy_uj").read_text().strip()) for z in self._zones}
        rails: dict[str, float] = {}
        watts = None
        if self._prev is not None and self._prev_t is not None:
            dt = (t - self._prev_t) / 1e9
            for z in self._zones:
                lab = z["label"]
                d = raw[lab] - self._prev[lab]
                if d < 0:  # counter wrapped
                    d += z["max_uj"] if z["max_uj"] else 2**32
                self._acc[lab] += d / 1e6
                if dt > 0:
                    rails[lab] = d / 1e6 / dt
            if dt > 0:
                watts = sum(rails[z["label"]] for z in self._zones if z["in_total"])
        self._prev, self._prev_t = raw, t
        energy = sum(self._acc[z["label"]] for z in self._zones if z["in_total"])
        temps: dict[str, float] = {}
        for ztype, path in self._thermal:
            try:
                temps[ztype] = int(path.read_text().strip()) / 1000.0
            except (OSError, ValueError):
                pass
        return Sample(
            t_ns=t,
            watts=watts,
            rails=rails,
            temps_c=temps,
            ram_used_bytes=_system_ram_used() if self.system_ram else None,
            extra={"energy_uj_raw": raw},
            energy_j=energy,
        )


class NvmlSampler(_PollingSampler):
    """NVIDIA GPU via NVML (``pynvml``, i.e. the ``nvidia-ml-py`` package), imported lazily.

    Uses ``nvmlDeviceGetTotalEnergyConsumption`` (mJ, Volta and later) for ``energy_j`` where
    supported, and ``nvmlDeviceGetPowerUsage`` for ``watts`` (on recent drivers/GPUs a ~1 s
    average). Also GPU memory used, GPU temperature, SM/memory clocks, throttle reasons.
    """

    name = "nvml"
    what = "GPU board power (NVML)"

    def __init__(
        self,
        interval_ms: float = 100,
        *,
        device_index: int = 0,
        nvml_module: Any = None,
        system_ram: bool = True,
        clock: Callable[[], int] = time.monotonic_ns,
    ):
        super().__init__(interval_ms, clock=clock)
        self.device_index = device_index
        self._nvml = nvml_module
        self.system_ram = system_ram
        self._handle = None
        self.energy_supported: bool | None = None

    @staticmethod
    def _import(nvml_module: Any = None) -> Any:
        if nvml_module is not None:
            return nvml_module
        import pynvml  # noqa: PLC0415 - optional dependency, imported only when used

        return pynvml

    @classmethod
    def available(cls, nvml_module: Any = None, device_index: int = 0, **_: Any) -> tuple[bool, str]:
        try:
            nv = cls._import(nvml_module)
        except ImportError:
            return False, "pynvml not importable (pip install nvidia-ml-py)"
        try:
            nv.nvmlInit()
        except Exception as e:  # noqa: BLE001
            return False, f"nvmlInit failed: {e}"
        try:
            n = nv.nvmlDeviceGetCount()
            if device_index >= n:
                return False, f"NVML sees {n} GPUs, no index {device_index}"
            return True, f"NVML sees {n} GPU(s)"
        except Exception as e:  # noqa: BLE001
            return False, f"NVML query failed: {e}"
        finally:
            try:
                nv.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass

    def check(self) -> tuple[bool, str]:
        return type(self).available(nvml_module=self._nvml, device_index=self.device_index)

    def _open(self) -> None:
        nv = self._nvml = self._import(self._nvml)
        nv.nvmlInit()
        self._handle = nv.nvmlDeviceGetHandleByIndex(self.device_index)
        self._e0_mj: int | None = None
        try:
            self._e0_mj = int(nv.nvmlDeviceGetTotalEnergyConsumption(self._handle))
            self.energy_supported = True
            self.what = "GPU board energy (NVML total energy counter)"
        except Exception:  # noqa: BLE001 - NVMLError_NotSupported before Volta
            self.energy_supported = False
            self.what = "GPU board power (NVML power usage, sampled)"

    def _close(self) -> None:
        try:
            if self._nvml is not None:
                self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass

    def _poll(self) -> Sample | None:
        nv = self._nvml
        if self._handle is None:
            self._open()
            nv = self._nvml
        h = self._handle
        t = self.clock()
        energy = None
        if self.energy_supported:
            try:
                energy = (int(nv.nvmlDeviceGetTotalEnergyConsumption(h)) - self._e0_mj) / 1000.0
            except Exception:  # noqa: BLE001
                energy = None
        watts = None
        try:
            watts = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
        except Exception:  # noqa: BLE001
            pass
        mem = None
        try:
            mem = int(nv.nvmlDeviceGetMemoryInfo(h).used)
        except Exception:  # noqa: BLE001
            pass
        temps: dict[str, float] = {}
        try:
            temps["gpu"] = float(nv.nvmlDeviceGetTemperature(h, getattr(nv, "NVML_TEMPERATURE_GPU", 0)))
        except Exception:  # noqa: BLE001
            pass
        extra: dict[str, Any] = {}
        for key, const in (("sm_clock_mhz", "NVML_CLOCK_SM"), ("mem_clock_mhz", "NVML_CLOCK_MEM")):
            try:
                extra[key] = int(nv.nvmlDeviceGetClockInfo(h, getattr(nv, const)))
            except Exception:  # noqa: BLE001
                pass
        for fn in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
            if hasattr(nv, fn):
                try:
                    extra["throttle_reasons"] = int(getattr(nv, fn)(h))
                    break
                except Exception:  # noqa: BLE001
                    pass
        return Sample(
            t_ns=t,
            watts=watts,
            rails={"gpu": watts} if watts is not None else {},
            temps_c=temps,
            ram_used_bytes=_system_ram_used() if self.system_ram else None,
            gpu_mem_bytes=mem,
            extra=extra,
            energy_j=energy,
        )


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


# --------------------------------------------------------------------------------------------
# Energy math
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Temperature and throttling
# --------------------------------------------------------------------------------------------

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
