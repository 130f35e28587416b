"""Emulated device memory: a memory cgroup around one benchmark process, so that everything it
touches counts against a ceiling (its anonymous memory and the page cache of the model file: with
mmap the weights are page cache, and a ceiling that did not count it would bind nothing).

- `probe()` finds a usable memory controller (cgroup v1, or v2, pure or hybrid) or raises
  `CeilingUnavailable` with the reason: a ceiling is never silently an unlimited run.
- `CellCgroup` makes one cgroup per cell with the ceiling as its hard limit (swap included: the
  emulated device has none), the child joins it between fork and exec, and after the cell the
  cgroup's peak usage and OOM-kill count are read before it is removed.
- `evict()` drops the model file's clean pages from the page cache before the cell (pages cached
  earlier were charged to whoever read them, so they would sit outside the ceiling), and
  `resident_bytes()` (mincore) checks that they are gone: the record carries what was left.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import platform
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

# Where cgroup filesystems are mounted; EDGEMOE_CGROUP_ROOT points elsewhere (a test of a host
# without a usable controller).
CGROUP_ROOT = Path(os.environ.get("EDGEMOE_CGROUP_ROOT", "/sys/fs/cgroup"))
UNLIMITED = "max"


class CeilingUnavailable(RuntimeError):
    """No usable memory cgroup on this host (the message says why)."""


@dataclass(frozen=True)
class Support:
    version: int  # 1 or 2
    parent: Path  # the directory cell cgroups are made in


def _own_cgroups(proc_cgroup: Path) -> dict[str, str]:
    """controller (or '' for the v2 hierarchy) -> this process's cgroup path."""
    out = {}
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def _writable(path: Path) -> bool:
    while not path.exists():
        path = path.parent
    return os.access(path, os.W_OK)


def probe(root: Path | None = None, proc_cgroup: Path = Path("/proc/self/cgroup"), system: str | None = None) -> Support:
    """The memory controller cells can use, or CeilingUnavailable naming what is missing."""
    root = root or CGROUP_ROOT
    system = system or platform.system()
    if system != "Linux":
        raise CeilingUnavailable(f"emulated memory ceilings need Linux memory cgroups; this host runs {system}")
    try:
        own = _own_cgroups(proc_cgroup)
    except OSError as e:
        raise CeilingUnavailable(f"cannot read {proc_cgroup}: {e}") from None
    v1 = root / "memory"
    if "memory" in own and (v1 / "memory.limit_in_bytes").is_file():
        parent = v1 / own["memory"].lstrip("/") / "edgemoe"
        if not _writable(parent):
            raise CeilingUnavailable(f"cgroup v1 memory controller at {v1} is not writable here (run as root, "
                                     "or give this user a delegated memory cgroup)")
        return Support(1, parent)
    v2 = root if (root / "cgroup.controllers").is_file() else root / "unified"
    if "" in own and (v2 / "cgroup.controllers").is_file():
        mine = v2 / own[""].lstrip("/")
        # A v2 cgroup holding processes cannot also give its children a controller (the
        # no-internal-process rule), so cell cgroups are siblings of ours, or children of the root.
        parent = mine if mine == v2 else mine.parent
        available = (mine / "cgroup.controllers").read_text().split() if (mine / "cgroup.controllers").is_file() else []
        if "memory" not in available:
            raise CeilingUnavailable(f"cgroup v2 at {v2}: the memory controller is not enabled for {mine} "
                                     "(bound to cgroup v1, or not in the parent's cgroup.subtree_control)")
        if not _writable(parent):
            raise CeilingUnavailable(f"cgroup v2: {parent} is not writable here (run as root, or under a "
                                     "delegated cgroup: systemd-run --user --scope -p Delegate=yes ...)")
        return Support(2, parent)
    raise CeilingUnavailable(f"no memory cgroup controller under {root} (neither v1 {v1} nor v2 mounted)")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text == UNLIMITED else int(text)


def _read_key(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except OSError:
        return None
    return None


class CellCgroup:
    """One cell's memory cgroup: `with CellCgroup(support, limit) as cg:` then pass `cg.join` to
    the child (it runs between fork and exec) and read `cg.stats()` after the child has exited."""

    def __init__(self, support: Support, limit_bytes: int | None, name: str | None = None):
        self.support, self.limit_bytes = support, limit_bytes
        self.path = support.parent / (name or f"cell-{uuid.uuid4().hex[:12]}")

    def _write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def __enter__(self) -> CellCgroup:
        self._remove_stale()
        self.path.mkdir(parents=True, exist_ok=False)
        if self.limit_bytes is not None:
            if self.support.version == 1:
                self._write("memory.limit_in_bytes", str(self.limit_bytes))
                if (self.path / "memory.memsw.limit_in_bytes").exists():  # swap counts too
                    self._write("memory.memsw.limit_in_bytes", str(self.limit_bytes))
            else:
                self._write("memory.max", str(self.limit_bytes))
                if (self.path / "memory.swap.max").exists():
                    self._write("memory.swap.max", "0")
        return self

    def _remove_stale(self) -> None:
        """Empty cell cgroups a killed run left behind (cells run one at a time, under the lock)."""
        for old in self.support.parent.glob("cell-*"):
            try:
                if not (old / "cgroup.procs").read_text().strip():
                    old.rmdir()
            except OSError:
                pass

    def join(self) -> None:
        """Move the calling process into the cgroup (the child, before exec)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def stats(self) -> dict[str, int | None]:
        """Peak usage (anonymous memory and page cache) and OOM kills since the cgroup was made."""
        if self.support.version == 1:
            return {"cgroup_peak_bytes": _read_int(self.path / "memory.max_usage_in_bytes"),
                    "cgroup_oom_kills": _read_key(self.path / "memory.oom_control", "oom_kill"),
                    "cgroup_limit_hits": _read_int(self.path / "memory.failcnt")}
        return {"cgroup_peak_bytes": _read_int(self.path / "memory.peak"),
                "cgroup_oom_kills": _read_key(self.path / "memory.events", "oom_kill"),
                "cgroup_limit_hits": _read_key(self.path / "memory.events", "max")}

    def __exit__(self, *exc) -> None:
        # The child has been reaped; an exiting process can stay listed for a moment.
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)
        self.path.rmdir()


# ---- the model file's pages ----------------------------------------------------------------------
def evict(path: str | Path) -> None:
    """Drop the file's clean cached pages (pages another process has mapped stay)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# More than this share of the file still cached after eviction: the ceiling would not count it.
RESIDENT_TOLERANCE = 0.01


def evict_and_check(path: str | Path) -> int:
    """Evict the file's pages, check with mincore that they are gone; return the bytes still
    resident (recorded with the cell). Raises when more than RESIDENT_TOLERANCE of it stayed."""
    evict(path)
    left = resident_bytes(path)
    size = os.path.getsize(path)
    if left > RESIDENT_TOLERANCE * size:
        raise RuntimeError(f"{path}: {left / 1e6:.0f} MB of {size / 1e6:.0f} MB stay in the page cache after "
                           "eviction (another process maps the file?); a memory ceiling would not count them")
    return left


def resident_bytes(path: str | Path) -> int:
    """Bytes of the file in the page cache now (mincore over a read-only mapping; faults nothing in)."""
    size = os.path.getsize(path)
    if size == 0:
        return 0
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    page = mmap.PAGESIZE
    vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap failed on {path}")
        try:
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore failed on {path}")
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec) * page
