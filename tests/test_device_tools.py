"""Tests for edgemoe.device_tools: the tegrastats, powermetrics and nvpmodel parsers on real tool
output, and the Jetson power-mode query against a stand-in nvpmodel."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgemoe.device_tools import (
    jetson_power_mode,
    parse_nvpmodel_query,
    parse_powermetrics_text,
    parse_tegrastats_line,
)

FIX = Path(__file__).resolve().parent / "fixtures"
MIB = 1024 * 1024


def _line(name: str) -> str:
    return (FIX / "tegrastats" / name).read_text().strip()


# ---------------------------------------------------------------- tegrastats parser


def test_tegrastats_jp6_user_fixture():
    f = parse_tegrastats_line(_line("orin-nano-jp6-user.txt"))
    assert f is not None
    assert f["watts"] == pytest.approx(4.824)
    assert f["rails"] == pytest.approx({"VDD_IN": 4.824, "VDD_CPU_GPU_CV": 0.518, "VDD_SOC": 1.475})
    assert f["ram_used_bytes"] == 3452 * MIB
    assert f["gpu_mem_bytes"] is None
    assert f["temps_c"] == pytest.approx(
        {"cpu": 50.031, "soc2": 49.031, "soc0": 50.0, "gpu": 49.031, "tj": 50.25, "soc1": 50.25}
    )
    x = f["extra"]
    assert x["timestamp"] == "06-18-2025 11:25:24"
    assert x["ram_total_bytes"] == 7620 * MIB
    assert x["swap_used_bytes"] == 1518 * MIB and x["swap_total_bytes"] == 16384 * MIB
    assert x["swap_cached_bytes"] == 174 * MIB
    assert x["cpu_load_pct"] == [1, 2, 0, 2, 2, 1]
    assert x["cpu_freq_mhz"] == [1420, 1420, 1420, 1420, 729, 729]
    assert x["gr3d_load_pct"] == 0 and "gr3d_freq_mhz" not in x  # user: no GPU clock
    assert "emc_freq_mhz" not in x
    assert x["watts_source"] == "VDD_IN"


def test_tegrastats_jp6_root_fixture():
    f = parse_tegrastats_line(_line("orin-nano-jp6-root.txt"))
    assert f is not None
    assert f["watts"] == pytest.approx(12.479)
    assert f["rails"] == pytest.approx({"VDD_IN": 12.479, "VDD_CPU_GPU_CV": 4.667, "VDD_SOC": 2.817})
    assert f["ram_used_bytes"] == 6185 * MIB
    assert f["temps_c"]["tj"] == pytest.approx(53.968)
    assert f["temps_c"]["gpu"] == pytest.approx(53.343)
    assert len(f["temps_c"]) == 6
    x = f["extra"]
    assert x["timestamp"] == "11-15-2024 08:38:09"
    assert x["emc_load_pct"] == 43 and x["emc_freq_mhz"] == 2133
    assert x["gr3d_load_pct"] == 63 and x["gr3d_freq_mhz"] == 621
    assert x["ape_freq_mhz"] == 200
    assert x["cpu_freq_mhz"] == [729] * 6
    assert x["cpu_load_pct"] == [15, 11, 14, 13, 11, 8]
    assert x["swap_used_bytes"] == 851 * MIB


def test_tegrastats_jetpack5_and_older_lines():
    jp5 = (
        "RAM 2448/7471MB (lfb 1x4MB) SWAP 0/3736MB (cached 0MB) CPU [0%@729,0%@729,off,off] "
        "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305,305] VIC_FREQ 729 APE 200 CV0@-256C CPU@46.218C "
        "GPU@-256C tj@46.218C VDD_IN 5000/5000 VDD_CPU_GPU_CV 600/600 VDD_SOC 1200/1200"
    )
    f = parse_tegrastats_line(jp5)
    assert f["watts"] == pytest.approx(5.0)
    assert f["rails"] == pytest.approx({"VDD_IN": 5.0, "VDD_CPU_GPU_CV": 0.6, "VDD_SOC": 1.2})
    assert f["temps_c"] == pytest.approx({"cpu": 46.218, "tj": 46.218})  # -256 C = sensor off
    assert f["extra"]["cpu_freq_mhz"] == [729, 729, None, None]
    assert f["extra"]["gr3d_freq_mhz"] == 305
    assert "timestamp" not in f["extra"]

    nano = (
        "RAM 1783/3956MB (lfb 1x4MB) SWAP 0/1978MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
        "CPU [3%@102,2%@102,0%@102,0%@102] EMC_FREQ 0%@1600 GR3D_FREQ 0%@76 APE 25 PLL@26C "
        "CPU@28.5C PMIC@100C GPU@28.5C AO@33.5C thermal@28.75C POM_5V_IN 2150/2150 "
        "POM_5V_GPU 0/0 POM_5V_CPU 204/204"
    )
    f = parse_tegrastats_line(nano)
    assert f["watts"] == pytest.approx(2.15)
    assert f["extra"]["watts_source"] == "POM_5V_IN"
    assert set(f["rails"]) == {"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}  # not RAM/SWAP/IRAM
    assert f["extra"]["gr3d_freq_mhz"] == 76
    assert f["ram_used_bytes"] == 1783 * MIB

    agx = "RAM 2448/30536MB CPU [1%@729] VDD_GPU_SOC 3180mW/3180mW VDD_CPU_CV 397mW/397mW VIN_SYS_5V0 2524mW/2524mW"
    f = parse_tegrastats_line(agx)
    assert f["watts"] == pytest.approx(3.18 + 0.397 + 2.524)
    assert f["extra"]["watts_source"] == "sum of rails"

    assert parse_tegrastats_line("") is None
    assert parse_tegrastats_line("tegrastats: some warning") is None


# ---------------------------------------------------------------- powermetrics parser


def _pm_text() -> str:
    return (FIX / "powermetrics" / "m2-air-text.txt").read_text()


def test_powermetrics_real_fixture():
    f = parse_powermetrics_text(_pm_text())
    assert f is not None
    assert f["watts"] == pytest.approx(1.172)
    assert f["rails"] == pytest.approx({"CPU": 0.823, "GPU": 0.026, "ANE": 0.323})
    x = f["extra"]
    assert x["estimate"] is True
    assert x["watts_source"] == "Combined Power"
    assert x["elapsed_ms"] == pytest.approx(1002.90)
    assert x["thermal_pressure"] == "Nominal"
    assert x["machine_model"] == "Mac14,2" and x["os_version"] == "25C56"
    assert x["freq_mhz"] == {"E-Cluster": 1248, "P-Cluster": 1145}
    assert x["active_residency_pct"] == pytest.approx({"E-Cluster": 77.43, "P-Cluster": 56.23})


def test_powermetrics_without_combined_power_sums_parts():
    text = "\n".join(ln for ln in _pm_text().splitlines() if not ln.startswith("Combined Power"))
    f = parse_powermetrics_text(text)
    assert f["watts"] == pytest.approx(0.823 + 0.026 + 0.323)
    assert f["extra"]["watts_source"] == "sum of CPU+GPU+ANE"


def test_powermetrics_m2_pro_two_p_clusters():
    out = []
    for ln in _pm_text().splitlines():
        if ln.startswith("P-Cluster"):
            out.append(ln.replace("P-Cluster", "P0-Cluster"))
            out.append(ln.replace("P-Cluster", "P1-Cluster").replace("1145 MHz", "2100 MHz"))
        elif ln.startswith("CPU Power"):
            out += ["E-Cluster Power: 100 mW", "P0-Cluster Power: 500 mW", "P1-Cluster Power: 223 mW", ln]
        elif ln.startswith("Combined Power"):
            continue  # and an older macOS
        else:
            out.append(ln)
    f = parse_powermetrics_text("\n".join(out))
    assert f["extra"]["freq_mhz"] == {"E-Cluster": 1248, "P0-Cluster": 1145, "P1-Cluster": 2100}
    assert f["rails"]["P0-Cluster"] == pytest.approx(0.5)
    assert f["rails"]["P1-Cluster"] == pytest.approx(0.223)
    # clusters are parts of CPU Power: not double-counted
    assert f["watts"] == pytest.approx(1.172)


# ---------------------------------------------------------------- nvpmodel


def test_parse_nvpmodel_query():
    assert parse_nvpmodel_query("NV Power Mode: 15W\n0\n") == {"name": "15W", "id": 0}
    txt = "NVPM WARN: fan mode is not set!\nNV Power Mode: MAXN_SUPER\n2\n"
    assert parse_nvpmodel_query(txt) == {"name": "MAXN_SUPER", "id": 2}
    assert parse_nvpmodel_query("command not found") is None


def test_jetson_power_mode_not_a_jetson(tmp_path):
    assert jetson_power_mode("no-such-nvpmodel-xyz", tegra_release=str(tmp_path / "none")) is None


def test_jetson_power_mode_with_standin(tmp_path):
    exe = tmp_path / "nvpmodel"
    exe.write_text(f"#!{sys.executable}\nprint('NV Power Mode: 7W\\n1')\n")
    exe.chmod(0o755)
    assert jetson_power_mode(str(exe)) == {"name": "7W", "id": 1}
