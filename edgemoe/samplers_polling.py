"""Samplers that read counters in-process on a fixed schedule: Linux RAPL (powercap sysfs) and
NVIDIA NVML. Cumulative energy counters give ``energy_j``, so windows use counter differences.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edgemoe.telemetry import Sample, Sampler, SamplerUnavailable, system_ram_used

__all__ = ["RaplSampler", "NvmlSampler"]


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
            ram_used_bytes=system_ram_used() if self.system_ram else None,
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
            ram_used_bytes=system_ram_used() if self.system_ram else None,
            gpu_mem_bytes=mem,
            extra=extra,
            energy_j=energy,
        )
