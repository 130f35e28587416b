"""A child process measured from outside, with nothing beside it that slows it.

- Serialised by a file lock (`bench_lock`) as well as by Snakemake's `bench` resource, so that two
  measurements never overlap even under a profile that forgets the resource limit.
- The child's exact peak RSS comes from os.wait4 (its own rusage, not RUSAGE_CHILDREN).
- While it runs only cheap counters are sampled (system memory in use, /proc/stat for steal and
  other processes' CPU time); the model's 2 MiB-page mapping (FilePmdMapped) is read once after
  the timed part (see run_measured). Each stdout line is stamped on arrival.
- The child's environment fixes its thread count and carries no secret (`child_env`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import resource
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

POLL_S = 0.05
IO_TRACE_POLL_S = 0.005  # with trace_io: the read-bytes trace's resolution (a counter read: microseconds)
MEMORY_SAMPLE_S = 0.5


# Held beside the work folder's lock: cells of two checkouts (or two pytest runs) on one host
# never overlap either.
HOST_LOCK = Path(tempfile.gettempdir()) / "edgemoe-bench.lock"


@contextmanager
def bench_lock(path: Path | str, wait_note: Any = None) -> Iterator[float]:
    """Exclusive locks (the work folder's and the host's) held for the whole cell; yields seconds
    spent waiting for them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f, open(HOST_LOCK, "a+") as host:
        t0 = time.monotonic()
        fcntl.flock(f, fcntl.LOCK_EX)
        fcntl.flock(host, fcntl.LOCK_EX)
        try:
            yield time.monotonic() - t0
        finally:
            fcntl.flock(host, fcntl.LOCK_UN)
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class ProcessResult:
    exit_code: int | None
    signal: int | None
    timed_out: bool
    peak_rss_bytes: int
    sys_mem_used_peak_bytes: int | None
    file_pmd_mapped_peak_bytes: int | None
    wall_s: float
    start_utc: str
    end_utc: str
    stdout_lines: list[tuple[int, str]] = field(default_factory=list)  # (monotonic ns, line)
    stderr_tail: str = ""
    cpu_s: float | None = None  # the child's user + system time
    steal_s: float | None = None  # hypervisor steal over the child's lifetime, all CPUs
    other_cpu_s: float | None = None  # everything else's CPU time meanwhile
    major_faults: int | None = None  # the child's page faults that waited for storage
    storage_read_bytes: int | None = None  # bytes the child made the kernel read from storage (Linux)
    io_trace: list[tuple[int, int]] = field(default_factory=list)  # (monotonic ns, child's read bytes so far)


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _file_pmd_mapped(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("FilePmdMapped:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _peak_rss(pid: int) -> int | None:
    """The process's own peak RSS since its exec (VmHWM; cheap: kernel counters, no page walk).
    os.wait4's ru_maxrss is not always that: a child forked from a big parent (a Snakemake job,
    pytest with pandas loaded) starts with the parent's pages and keeps that mark across exec."""
    return _status_kib(pid, "VmHWM")


def _rss(pid: int) -> int | None:
    return _status_kib(pid, "VmRSS")


def _read_bytes(pid: int | str) -> int | None:
    """Storage bytes read on behalf of the process (/proc/<pid>/io; counters only, microseconds).
    A parent's own count includes its reaped children's, which gives a child's exact total."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def bytes_in_window(trace: list[tuple[int, int]], start_ns: int, end_ns: int) -> int | None:
    """Read bytes between two instants of an io trace, linearly interpolated between samples;
    None when the trace does not bracket the window."""
    pts = sorted(trace)
    if not pts or pts[0][0] > start_ns or pts[-1][0] < end_ns - 10**8:  # the last sample may trail by <0.1 s
        return None

    def at(t: int) -> float:
        for (t0, b0), (t1, b1) in zip(pts, pts[1:]):
            if t0 <= t <= t1:
                return b0 + (b1 - b0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)
        return pts[-1][1]

    return max(int(round(at(end_ns) - at(start_ns))), 0)


def _sys_mem_used() -> int | None:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total - vm.available)
    except ImportError:
        return None


def _maxrss_bytes(ru_maxrss: int) -> int:
    # Linux reports KiB, macOS bytes.
    return ru_maxrss if os.uname().sysname == "Darwin" else ru_maxrss * 1024


def _own_peak(hwm: list[int | None], ru_maxrss: int, parent_rss: int | None) -> int:
    """The child's peak RSS. ru_maxrss is exact when it exceeds what the child inherited at fork
    (the parent's RSS then); at or below that it may be the parent's mark, and the child's last
    VmHWM reading (after the timed part, or within MEMORY_SAMPLE_S of the end) stands in."""
    rusage = _maxrss_bytes(ru_maxrss)
    seen = [h for h in hwm if h]
    if parent_rss is None or rusage > parent_rss or not seen:
        return rusage
    return min(seen[-1], rusage)


def _proc_stat_jiffies() -> tuple[int, int] | None:
    """(busy, steal) jiffies of all CPUs from /proc/stat (Linux; None elsewhere): reading it costs
    microseconds, unlike a walk of the child's page tables."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def run_measured(cmd: list[str], *, timeout_s: float, env: dict[str, str], stderr_path: Path,
                 memory_limit_bytes: int | None = None, result_lines: int | None = None,
                 cgroup: Any = None, trace_io: bool = False) -> ProcessResult:
    """Run cmd, stamping each stdout line; return exact peak RSS and what we sampled.

    While the child is timed only cheap counters are read (system memory in use, /proc/stat).
    The model's 2 MiB-page mapping (FilePmdMapped in smaps_rollup: a walk of the child's page
    tables, 63 ms of kernel time per read with a 4 GB model mapped, which slowed the benchmark
    beside it by up to 12%) is read once, when the child has printed its `result_lines`-th JSON
    line (every timed repetition is over), with the child stopped (SIGSTOP) so that it has not
    unmapped the model yet, then resumed.

    cgroup (edgemoe.memcg.CellCgroup): the child joins it before exec. trace_io: the child's read
    bytes are sampled every poll and at each JSON line (`io_trace`, for bytes read per token)."""

    def limit_memory() -> None:
        os.setsid()  # own process group: a timeout kills the whole tree
        if memory_limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
        if cgroup is not None:
            cgroup.join()

    start_utc, t0 = _utc_now(), time.monotonic()
    stat_before = _proc_stat_jiffies()
    pmd: list[int | None] = [None]
    hwm: list[int | None] = []  # VmHWM readings of the child
    parent_rss = _rss(os.getpid())  # what a forked child starts with
    read_before = _read_bytes("self")
    io_trace: list[tuple[int, int]] = []
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env,
                                preexec_fn=limit_memory)
        lines: list[tuple[int, str]] = []

        def read_stdout() -> None:
            results = 0
            for raw in proc.stdout:  # type: ignore[union-attr]
                lines.append((time.monotonic_ns(), raw.decode(errors="replace")))
                results += raw.lstrip().startswith(b"{")
                if trace_io and raw.lstrip().startswith(b"{") and (b := _read_bytes(proc.pid)) is not None:
                    io_trace.append((time.monotonic_ns(), b))
                if result_lines and results == result_lines and pmd[0] is None:
                    try:
                        os.kill(proc.pid, signal.SIGSTOP)
                    except ProcessLookupError:  # already exited and reaped: nothing to read
                        continue
                    try:
                        pmd[0] = _file_pmd_mapped(proc.pid)
                        hwm.append(_peak_rss(proc.pid))
                    finally:
                        os.kill(proc.pid, signal.SIGCONT)

        reader = threading.Thread(target=read_stdout, daemon=True)
        reader.start()
        sys_peak = None
        timed_out = False
        next_sample = 0.0
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.monotonic()
            if trace_io and (b := _read_bytes(proc.pid)) is not None:
                io_trace.append((time.monotonic_ns(), b))
            if now >= next_sample:
                sys_peak = max(filter(None, (sys_peak, _sys_mem_used())), default=None)
                hwm.append(_peak_rss(proc.pid))
                next_sample = now + MEMORY_SAMPLE_S
            if now - t0 > timeout_s and not timed_out:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(IO_TRACE_POLL_S if trace_io else POLL_S)
        proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
        reader.join(timeout=10)
    wall = time.monotonic() - t0
    stat_after = _proc_stat_jiffies()
    read_after = _read_bytes("self")
    code = os.waitstatus_to_exitcode(status)
    tail = stderr_path.read_bytes()[-4000:].decode(errors="replace")
    child_cpu = ru.ru_utime + ru.ru_stime
    steal = other = None
    if stat_before and stat_after:
        hz = os.sysconf("SC_CLK_TCK")
        steal = (stat_after[1] - stat_before[1]) / hz
        other = max((stat_after[0] - stat_before[0]) / hz - child_cpu, 0.0)
    return ProcessResult(
        exit_code=code if code >= 0 else None, signal=-code if code < 0 else None, timed_out=timed_out,
        peak_rss_bytes=_own_peak(hwm, ru.ru_maxrss, parent_rss), sys_mem_used_peak_bytes=sys_peak,
        file_pmd_mapped_peak_bytes=pmd[0], wall_s=wall, start_utc=start_utc, end_utc=_utc_now(),
        stdout_lines=lines, stderr_tail=tail, cpu_s=child_cpu, steal_s=steal, other_cpu_s=other,
        major_faults=ru.ru_majflt,
        storage_read_bytes=read_after - read_before if read_before is not None and read_after is not None else None,
        io_trace=sorted(io_trace))


def child_env(threads: int) -> dict[str, str]:
    """The benchmark's environment: Snakemake exports OMP_NUM_THREADS=<job threads>; the thread
    count measured must be the configured one, whatever --cores was."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
              "NUMEXPR_NUM_THREADS", "GOTO_NUM_THREADS"):
        env[k] = str(threads)
    return env


