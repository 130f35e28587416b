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
    "is_powermetrics_power_line",
    "parse_nvpmodel_query",
    "jetson_power_mode",
]

MIB = 1024 * 1024

_TS_RE = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})(?!\S)")
_RAM_RE = re.compile(r"(?<!\S)RAM (\d+)/(\d+)MB(?: \(lfb [^)]*\))?")
_SWAP_RE = re.compile(r"(?<!\S)SWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?")
_IRAM_RE = re.compile(r"(?<!\S)IRAM \d+/\d+kB(?: ?\(lfb [^)]*\))?")
_CPU_RE = re.compile(r"(?<!\S)CPU \[([^\]]*)\]")
_MTS_RE = re.compile(r"(?<!\S)MTS fg \d+% bg \d+%")
# "EMC_FREQ 0%@2133", "EMC_FREQ 0%" (user), "EMC_FREQ @2133"
_EMC_RE = re.compile(r"(?<!\S)EMC_FREQ (?=[\d@])(?:(\d+)%)?(?:@(\d+))?(?!\S)")
# "GR3D_FREQ 63%@[621]", "GR3D_FREQ 0%@76" (JetPack 4), "GR3D_FREQ 0%" (user), "GR3D_FREQ @[0,0,0]" (Thor)
_GR3D_RE = re.compile(r"(?<!\S)GR3D_FREQ (?=[\d@])(?:(\d+)%)?(?:@\[?([\d,]+)\]?)?(?!\S)")
# Other engines: "NVENC 79%@166", "VIC off", "NVENC0_FREQ @0", "VIC_FREQ 729", "APE 200", "GR3D2_FREQ 0%@114"
_ENGINE_RE = re.compile(r"(?<!\S)([A-Z][A-Z0-9_]*) (off|(\d+)%@(\d+)|@(\d+)|(\d+)%|(\d+))(?!\S)")
# "cpu@46.531C", "tj@47C", "CV0@-256C" (sensor off), "cpu@34.312C/34.843C" (JetPack 7.2: current/max)
_TEMP_RE = re.compile(r"(?<!\S)([A-Za-z]\w*)@(-?\d+(?:\.\d+)?)C(?:/(-?\d+(?:\.\d+)?)C)?(?!\S)")
# Rails "NAME cur/avg" with or without mW ("POM_5V_IN 2150/2150", "VDD_IN 4824mW/4824mW"), and
# "cur/avg/max" (JetPack 7.2: "VDD_GPU 4925mW/4925mW/4925mW").
_RAIL_RE = re.compile(r"(?<!\S)([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?!\S)")
# Left-over text that looks like power: the line has power the parser could not read.
_POWERISH_RE = re.compile(r"\d(?:mW|W)\b|\d/\d|\bV(?:DD|IN)")
# Rails that are the whole module/board input, best first (VIN: Thor).
TEGRA_INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")
_NOT_RAILS = ("RAM", "SWAP", "IRAM", "NC")  # NC: an INA3221 channel not connected (AGX Orin)


def _take(text: list[str], rx: re.Pattern[str]) -> list[re.Match[str]]:
    """All matches of rx in the working copy, each blanked out so that later patterns and the
    left-over check do not see it again."""
    found = list(rx.finditer(text[0]))
    for m in found:
        a, b = m.span()
        text[0] = text[0][:a] + " " * (b - a) + text[0][b:]
    return found


def parse_tegrastats_line(line: str) -> dict[str, Any] | None:
    """Parse one tegrastats line into Sample fields (all but ``t_ns``).

    Formats: JetPack 3/4 (``POM_5V_IN 2150/2150`` without mW), 5 and 6 (``VDD_IN 4824mW/4824mW``,
    ``GR3D_FREQ 63%@[621]`` as root), 7 / Thor (``GR3D_FREQ @[0,0,0]``, ``NVENC0_FREQ @0``,
    ``VDD_CPU_SOC_MSS``, ``VIN``) and 7.2 (``cpu@34.3C/34.8C``, ``VDD_GPU 4925mW/4925mW/4925mW``).
    ``watts`` is the first input rail found (VDD_IN, POM_5V_IN, VIN), else the sum of the rails
    (``extra['no_input_rail']``: AGX Orin, Xavier and some Thor images print none).
    ``extra['problem']`` says why ``watts`` is None (no power in the line, or power the parser
    could not read); ``extra['unparsed']`` holds any text no pattern understood.
    Returns None if the line carries nothing tegrastats-like.
    """
    text = [line]
    extra: dict[str, Any] = {}
    m = _TS_RE.match(line)
    if m:
        extra["timestamp"] = m.group(1)
        _take(text, _TS_RE)
    rails: dict[str, float] = {}
    rails_avg: dict[str, float] = {}
    rails_max: dict[str, float] = {}
    ram_used = None
    for m in _take(text, _RAM_RE)[:1]:
        ram_used = int(m.group(1)) * MIB
        extra["ram_total_bytes"] = int(m.group(2)) * MIB
    for m in _take(text, _SWAP_RE)[:1]:
        extra["swap_used_bytes"] = int(m.group(1)) * MIB
        extra["swap_total_bytes"] = int(m.group(2)) * MIB
        if m.group(3) is not None:
            extra["swap_cached_bytes"] = int(m.group(3)) * MIB
    _take(text, _IRAM_RE)
    _take(text, _MTS_RE)
    cpu = _take(text, _CPU_RE)
    for m in cpu[:1]:
        loads: list[float | None] = []
        freqs: list[int | None] = []
        for entry in m.group(1).split(","):
            em = re.fullmatch(r"(\d+)%(?:@(\d+))?", entry.strip())
            loads.append(float(em.group(1)) if em else None)  # "off": core offline
            freqs.append(int(em.group(2)) if em and em.group(2) else None)
        extra["cpu_load_pct"] = loads
        extra["cpu_freq_mhz"] = freqs
    for m in _take(text, _EMC_RE)[:1]:
        if m.group(1):
            extra["emc_load_pct"] = float(m.group(1))
        if m.group(2):
            extra["emc_freq_mhz"] = int(m.group(2))
    for m in _take(text, _GR3D_RE)[:1]:
        if m.group(1):
            extra["gr3d_load_pct"] = float(m.group(1))
        fs = [int(x) for x in (m.group(2) or "").split(",") if x]
        if fs:
            extra["gr3d_freq_mhz"] = max(fs)
    for name, cur, avg, mx in (m.groups() for m in _take(text, _RAIL_RE)):
        if name in _NOT_RAILS:
            continue
        rails[name] = int(cur) / 1000.0
        rails_avg[name] = int(avg) / 1000.0
        if mx is not None:
            rails_max[name] = int(mx) / 1000.0
    temps: dict[str, float] = {}
    temps_max: dict[str, float] = {}
    for name, val, mx in (m.groups() for m in _take(text, _TEMP_RE)):
        if float(val) > -256.0:  # -256 C: sensor off
            temps[name.lower()] = float(val)
            if mx is not None:
                temps_max[name.lower()] = float(mx)
    engines: dict[str, dict[str, Any]] = {}
    for m in _take(text, _ENGINE_RE):
        name, value, pct, at, bare_at, bare_pct, bare = m.groups()
        e: dict[str, Any] = {"off": True} if value == "off" else {}
        if pct or bare_pct:
            e["load_pct"] = float(pct or bare_pct)
        if at or bare_at or bare:
            e["freq_mhz"] = int(at or bare_at or bare)
        engines[name] = e
    if not rails and ram_used is None and not cpu:
        return None
    if "APE" in engines and "freq_mhz" in engines["APE"]:
        extra["ape_freq_mhz"] = engines["APE"]["freq_mhz"]
    if engines:
        extra["engines"] = engines
    left = " ".join(text[0].split())
    if left:
        extra["unparsed"] = left

    watts = None
    inputs = [n for n in TEGRA_INPUT_RAILS if n in rails]
    if inputs:
        watts = rails[inputs[0]]
        extra["watts_source"] = inputs[0]
    elif left and _POWERISH_RE.search(left):
        extra["problem"] = f"power field not understood: {left[:80]!r}"
    elif rails:
        watts = sum(rails.values())
        extra["watts_source"] = "sum of rails"
        extra["no_input_rail"] = True
    else:
        extra["problem"] = "no power rail in the line"
    if rails_avg:
        extra["rails_avg_w"] = rails_avg
    if rails_max:
        extra["rails_max_w"] = rails_max
    if temps_max:
        extra["temps_max_c"] = temps_max
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
_PM_POWER_RE = re.compile(r"^\s*(.+?) Power(?: \([^)]*\))?:\s*([\d.]+)\s*(mW|W)\s*$")
# Intel Macs: "Intel energy model derived package power (CPUs+GT+SA): 48.61W"
_PM_INTEL_RE = re.compile(r"^\s*Intel energy model derived package power(?: \([^)]*\))?:\s*([\d.]+)\s*(mW|W)\s*$")
_PM_FREQ_RE = re.compile(r"^\s*(.+?) HW active frequency:\s*([\d.]+)\s*MHz")
_PM_RES_RE = re.compile(r"^\s*(.+?) HW active residency:\s*([\d.]+)%")
_PM_ELAPSED_RE = re.compile(r"\(([\d.]+)\s*ms elapsed\)")
_PM_PRESSURE_RE = re.compile(r"^\s*Current pressure level:\s*(\S+)")


def _pm_watts(value: str, unit: str) -> float:
    return float(value) / (1000.0 if unit == "mW" else 1.0)


def parse_powermetrics_text(block: str) -> dict[str, Any] | None:
    """Parse one powermetrics text sample (``--samplers cpu_power,gpu_power,thermal``).

    ``watts`` is an *estimate of SoC power* made by macOS: ``Combined Power (CPU + GPU + ANE)``
    (macOS 13 and later), else ``Package Power`` (older releases), else the Intel package power,
    else CPU + GPU + ANE summed. ``rails`` holds every ``<name> Power: N mW`` line (first
    occurrence wins: GPU Power appears in two sections), e.g. CPU, GPU, ANE, DRAM, per cluster.
    Without any of those totals nor CPU Power (e.g. only the gpu_power sampler ran), ``watts`` is
    None and ``extra['problem']`` says why. Returns None if the block has no power line at all.
    """
    rails: dict[str, float] = {}
    freqs: dict[str, float] = {}
    res: dict[str, float] = {}
    extra: dict[str, Any] = {"estimate": True}
    unparsed: list[str] = []
    intel = None
    for line in block.splitlines():
        m = _PM_POWER_RE.match(line)
        if m:
            rails.setdefault(m.group(1).strip(), _pm_watts(m.group(2), m.group(3)))
            continue
        m = _PM_INTEL_RE.match(line)
        if m:
            intel = _pm_watts(m.group(1), m.group(2))
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
        elif re.search(r"(?i)\bpower\b.*:", line) and re.search(r"\d", line):
            unparsed.append(line.strip())
    if not rails and intel is None:
        return None
    watts = None
    if "Combined" in rails:
        watts = rails.pop("Combined")
        extra["watts_source"] = "Combined Power"
    elif "Package" in rails:
        watts = rails.pop("Package")
        extra["watts_source"] = "Package Power"
    elif intel is not None:
        watts = intel
        extra["watts_source"] = "Intel package power"
    elif "CPU" in rails:
        parts = [k for k in ("CPU", "GPU", "ANE") if k in rails]
        watts = sum(rails[k] for k in parts)
        extra["watts_source"] = "sum of " + "+".join(parts)
    else:
        extra["problem"] = "no Combined, Package or CPU Power line (has: " + ", ".join(rails) + ")"
    if unparsed:
        extra["unparsed"] = unparsed
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


def is_powermetrics_power_line(line: str) -> bool:
    return bool(_PM_POWER_RE.match(line) or _PM_INTEL_RE.match(line))


def split_powermetrics_blocks(text: str) -> list[str]:
    """Split concatenated powermetrics text output into one string per sample (those with a power
    line; the preamble before the first sample stays with it)."""
    blocks: list[list[str]] = []
    cur: list[str] = []
    for line in text.splitlines():
        if line.startswith(POWERMETRICS_HEADER) and any(POWERMETRICS_HEADER in x for x in cur):
            blocks.append(cur)
            cur = []
        cur.append(line)
    if cur:
        blocks.append(cur)
    return ["\n".join(b) for b in blocks if any(is_powermetrics_power_line(x) for x in b)]


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
