"""Text parsers of the device tools (tegrastats, powermetrics, nvpmodel), kept pure and apart from
the samplers that run those tools, so that they can be tested on recorded output of each device.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

__all__ = [
    "parse_tegrastats_line",
    "parse_powermetrics_text",
    "split_powermetrics_blocks",
    "parse_nvpmodel_query",
    "jetson_power_mode",
]

MIB = 1024 * 1024

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


# First line of each powermetrics sample; the powermetrics sampler cuts its stream there.
POWERMETRICS_HEADER = "*** Sampled system activity"
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
        if m and POWERMETRICS_HEADER in line:
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
        if line.startswith(POWERMETRICS_HEADER) and any(POWERMETRICS_HEADER in x for x in cur):
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
