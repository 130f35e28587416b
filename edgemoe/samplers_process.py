"""Samplers that run a device tool beside the benchmark and read its stdout: Jetson tegrastats and
macOS powermetrics. Each line is stamped on arrival, with the clock the runner's windows use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any, Callable, Sequence

from edgemoe.device_tools import (
    POWERMETRICS_HEADER,
    TEGRA_INPUT_RAILS,
    is_powermetrics_power_line,
    parse_powermetrics_text,
    parse_tegrastats_line,
)
from edgemoe.telemetry import Sample, Sampler, shorten, system_ram_used

__all__ = ["TegrastatsSampler", "PowermetricsSampler"]


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
        self._reset_diagnostics()
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
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not raw.endswith(b"\n"):  # cut off when the tool was stopped: not a format problem
                self.n_unparsed += 1
                continue
            try:
                self._on_line(t, line)
            except Exception as e:  # noqa: BLE001 - one bad line must not end sampling
                self._not_understood(line, f"{type(e).__name__}: {e}")
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
                f": {self.problem}" if self.problem else f": {tail}" if tail else ""
            )
        elif self.problem and all(s.watts is None for s in self.samples):
            self.error = f"{self.executable} gave no power reading: {self.problem}"
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
    what = "module input power (tegrastats VDD_IN; POM_5V_IN on Nano/TX, VIN on Thor; else sum of rails)"

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
        """A line the parser does not understand, or whose power it cannot read, is counted, kept
        (``unparsed_lines``) and named (``problem``, ``warnings``); a line without an input rail
        gives a sum-of-rails reading and a warning."""
        if not line.strip():
            return
        fields = parse_tegrastats_line(line)
        if fields is None:
            self._not_understood(line)
            return
        x = fields["extra"]
        if x.get("problem"):
            self._not_understood(line, x["problem"])
        elif x.get("no_input_rail"):
            self._warn(f"tegrastats: no input-power rail ({', '.join(TEGRA_INPUT_RAILS)}); watts is the "
                       f"sum of the rails {'+'.join(fields['rails'])}, a lower bound of module power")
        if x.get("unparsed") and not x.get("problem"):
            self._warn(f"tegrastats fields not understood (ignored): {shorten(x['unparsed'], 80)}")
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

    def _flush(self, final: bool = False) -> None:
        """Parse the block so far. A block without a power line, or whose power the parser cannot
        total, is counted and named (``problem``), except the one cut off at stop (``final``)."""
        if self._block and self._block_t is not None:
            text = "\n".join(self._block)
            fields = parse_powermetrics_text(text)
            if fields is None:
                if final:
                    self.n_unparsed += 1
                else:
                    body = [ln for ln in self._block if ln.strip() and not ln.startswith("*")]
                    self._not_understood("\n".join(body[:4]), "no power line", what="block")
            else:
                if fields["extra"].get("problem"):
                    power = [ln for ln in self._block if is_powermetrics_power_line(ln)]
                    power += fields["extra"].get("unparsed", [])
                    self._not_understood("\n".join(power), fields["extra"]["problem"], what="block")
                if self.system_ram:
                    fields["ram_used_bytes"] = system_ram_used()
                self._append(Sample(t_ns=self._block_t, **fields))
        self._block = []
        self._block_t = None

    def _on_line(self, t_ns: int, line: str) -> None:
        # the preamble (Machine model, OS version) stays with the first sample
        if line.startswith(POWERMETRICS_HEADER) and any(POWERMETRICS_HEADER in x for x in self._block):
            self._flush()
        self._block.append(line)
        if line.strip():
            # powermetrics prints a whole sample at the end of its interval: stamp the block with
            # the reception of its last line, not with the next header (one interval later).
            self._block_t = t_ns

    def _on_eof(self) -> None:
        self._flush(final=True)

    def start(self) -> None:
        self._block, self._block_t = [], None
        super().start()

