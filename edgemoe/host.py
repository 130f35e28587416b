"""Facts about the machine we run on, and which device profiles it matches."""

from __future__ import annotations

import os
import platform
import re
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def cpu_brand() -> str:
    if platform.system() == "Darwin":
        import subprocess

        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, timeout=5).stdout.strip()
        except OSError:
            return platform.processor()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for key in ("model name", "Hardware", "Model", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.M)
        if m:
            return m.group(1).strip()
    return platform.processor() or "unknown"


def total_memory_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:  # analysis-only installs have no psutil; Linux still tells us
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def host_facts() -> dict[str, Any]:
    """What a record says about the host (cheap: called once per cell)."""
    uname = platform.uname()
    return {
        "host_cpu": cpu_brand(),
        "host_logical_cpus": os.cpu_count() or 0,
        "host_memory_bytes": total_memory_bytes(),
        "host_os": _os_name(),
        "host_kernel": uname.release,
        "host_machine": uname.machine,
        "host_name_hash": _hostname_hash(),
    }


def _os_name() -> str:
    if platform.system() == "Linux":
        try:
            return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
        except OSError:
            return "Linux"
    if platform.system() == "Darwin":
        return f"macOS {platform.mac_ver()[0]}"
    return platform.system()


def _hostname_hash() -> str:
    # Identify repeat runs on one machine without publishing its name.
    import hashlib

    return hashlib.sha256(platform.node().encode()).hexdigest()[:12]


def device_matches(match: dict[str, Any]) -> tuple[bool, str]:
    """Does this host fit a device profile's `match` block? Returns (ok, why not)."""
    system, machine = platform.system(), platform.machine()
    if "system" in match and match["system"] != system:
        return False, f"needs {match['system']}, this host runs {system}"
    if "machine" in match and machine not in match["machine"]:
        return False, f"needs machine {match['machine']}, this host is {machine}"
    for p in match.get("paths", []):
        if not Path(p).exists():
            return False, f"needs {p}, absent here"
    for p in match.get("absent_paths", []):
        if Path(p).exists():
            return False, f"{p} exists here (another profile fits this host better)"
    for c in match.get("commands", []):
        if shutil.which(c) is None:
            return False, f"needs the command {c}, not found"
    if "cpu_brand" in match and match["cpu_brand"] not in cpu_brand():
        return False, f"needs CPU {match['cpu_brand']!r}, this host has {cpu_brand()!r}"
    return True, ""
