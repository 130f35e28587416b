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


def _fixture(kind: str, name: str) -> str:
    """A fixture under fixtures/<kind>/formats/ without its '#' source header."""
    text = (FIX / kind / "formats" / name).read_text()
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith("#")).strip("\n")


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


@pytest.mark.parametrize(
    "name, watts, source, n_temps",
    [
        ("jp4-r32-nano-pom5v.txt", 4.52, "POM_5V_IN", 6),  # JetPack 4: no mW, POM_5V_IN
        ("jp4-r32-tx2-vddin.txt", 5.297, "VDD_IN", 8),  # JetPack 4: VDD_IN without mW, MTS
        ("agx-orin-nc-rails.txt", 2.340 + 0.390 + 4.025 + 0.301, "sum of rails", 7),  # NC skipped
        ("jp62-r36.4.4-agx-orin.txt", 2.412 + 1.607 + 4.707, "sum of rails", 5),
        ("jp7-r38.4-thor.txt", 0.0 + 4.165 + 4.126, "sum of rails", 4),
        ("jp72-r39.2-thor.txt", 4.925 + 7.953 + 6.667, "sum of rails", 5),
        ("jp72-r39.2-agx-orin.txt", 2.265 + 2.643 + 4.722, "sum of rails", 5),
    ],
)
def test_tegrastats_formats_across_jetpack_versions(name, watts, source, n_temps):
    f = parse_tegrastats_line(_fixture("tegrastats", name))
    assert f is not None
    x = f["extra"]
    assert f["watts"] == pytest.approx(watts)
    assert x["watts_source"] == source
    assert x.get("no_input_rail", False) == (source == "sum of rails")
    assert "problem" not in x
    assert "unparsed" not in x, x["unparsed"]  # every field of every format is understood
    assert len(f["temps_c"]) == n_temps and all(v > -256 for v in f["temps_c"].values())
    assert f["ram_used_bytes"] > 0 and x["cpu_load_pct"]
    assert "NC" not in f["rails"]


def test_tegrastats_thor_and_jetpack72_fields():
    thor = parse_tegrastats_line(_fixture("tegrastats", "jp7-r38.4-thor.txt"))
    x = thor["extra"]
    assert "gr3d_load_pct" not in x and x["gr3d_freq_mhz"] == 0  # "GR3D_FREQ @[0,0,0]"
    assert x["emc_load_pct"] == 0 and x["emc_freq_mhz"] == 665
    assert x["engines"]["NVENC0_FREQ"] == {"freq_mhz": 0} and x["engines"]["VIC"] == {"off": True}
    assert set(thor["rails"]) == {"VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0"}
    assert len(x["cpu_load_pct"]) == 14 and thor["temps_c"]["soc345"] == pytest.approx(34.5)

    new = parse_tegrastats_line(_fixture("tegrastats", "jp72-r39.2-thor.txt"))
    x = new["extra"]
    assert new["rails"]["VDD_CPU_SOC_MSS"] == pytest.approx(7.953)  # cur/avg/max
    assert x["rails_avg_w"]["VDD_CPU_SOC_MSS"] == pytest.approx(8.332)
    assert x["rails_max_w"]["VDD_CPU_SOC_MSS"] == pytest.approx(8.710)
    assert new["temps_c"]["cpu"] == pytest.approx(34.312)  # cur/max
    assert x["temps_max_c"]["cpu"] == pytest.approx(34.843)
    assert x["gr3d_freq_mhz"] == 314 and x["engines"]["VIC"] == {"load_pct": 59.0, "freq_mhz": 423}

    orin = parse_tegrastats_line(_fixture("tegrastats", "jp62-r36.4.4-agx-orin.txt"))
    assert orin["extra"]["engines"]["NVENC"] == {"load_pct": 79.0, "freq_mhz": 166}
    assert orin["extra"]["ape_freq_mhz"] == 174
    off = parse_tegrastats_line(_fixture("tegrastats", "jp72-r39.2-agx-orin.txt"))
    assert off["extra"]["cpu_load_pct"][-4:] == [None] * 4  # cores "off"


def test_tegrastats_lines_without_power_are_flagged():
    # JetPack 4.6 TX2: a tegrastats line with RAM, CPU, clocks and temperatures but no rail
    f = parse_tegrastats_line(_fixture("tegrastats", "jp46-r32-tx2-no-rails.txt"))
    assert f is not None and f["watts"] is None and f["rails"] == {}
    assert f["extra"]["problem"] == "no power rail in the line"
    assert f["ram_used_bytes"] == 1689 * MIB and f["temps_c"]["gpu"] == 50
    assert f["extra"]["cpu_load_pct"] == [3, None, None, 0, 1, 1]
    # L4T 28 (TX1): older format, no power; the old "cpu [..]@MHz" field is kept as unparsed
    old = parse_tegrastats_line(_fixture("tegrastats", "r28-tx1-old-format.txt"))
    assert old["watts"] is None and old["extra"]["problem"] == "no power rail in the line"
    assert old["extra"]["unparsed"] == "cpu [17%,13%,29%,5%]@408"
    assert old["extra"]["engines"]["GR3D"] == {"load_pct": 3.0, "freq_mhz": 76}


def test_tegrastats_power_in_an_unknown_form_is_not_summed():
    thor = _fixture("tegrastats", "jp7-r38.4-thor.txt")
    # a future tegrastats printing watts: the rails are not understood, so no sum of what is left
    changed = thor.replace("VDD_GPU 0mW/0mW", "VDD_GPU 0.0W/0.0W").replace(
        "VDD_CPU_SOC_MSS 4165mW/4165mW", "VDD_CPU_SOC_MSS 4.165W/4.165W")
    f = parse_tegrastats_line(changed)
    assert f["watts"] is None and f["rails"] == {"VIN_SYS_5V0": pytest.approx(4.126)}
    assert f["extra"]["problem"].startswith("power field not understood: 'VDD_GPU 0.0W/0.0W")
    # with an input rail the total stands; the unknown field is only reported
    vin = parse_tegrastats_line(thor + " VIN 16802mW/16802mW FOO_BAR 1.5W")
    assert vin["watts"] == pytest.approx(16.802) and vin["extra"]["watts_source"] == "VIN"
    assert vin["extra"]["unparsed"] == "FOO_BAR 1.5W" and "problem" not in vin["extra"]


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


@pytest.mark.parametrize(
    "name, watts, source, rails",
    [
        # macOS 15.5, M4 Max: Combined Power; GPU Power appears twice (first wins)
        ("macos15.5-m4max-combined.txt", 0.983, "Combined Power", {"CPU": 0.954, "GPU": 0.028, "ANE": 0.0}),
        # M1 Pro, older format: per-cluster, DRAM and Package Power, no Combined Power
        ("m1pro-package-power.txt", 2.151, "Package Power",
         {"P1-Cluster": 0.1, "ANE": 0.0, "DRAM": 0.688, "CPU": 0.742, "GPU": 0.026}),
        # Intel Mac, macOS 14: one package line, in W
        ("macos14-intel-package.txt", 48.61, "Intel package power", {}),
    ],
)
def test_powermetrics_formats_across_macos_versions(name, watts, source, rails):
    f = parse_powermetrics_text(_fixture("powermetrics", name))
    assert f is not None
    assert f["watts"] == pytest.approx(watts)
    assert f["extra"]["watts_source"] == source
    assert f["rails"] == pytest.approx(rails)
    assert "problem" not in f["extra"] and "unparsed" not in f["extra"]


def test_powermetrics_m4max_clusters_and_gpu():
    x = parse_powermetrics_text(_fixture("powermetrics", "macos15.5-m4max-combined.txt"))["extra"]
    assert x["machine_model"] == "Mac16,6" and x["os_version"] == "24F74"
    assert x["elapsed_ms"] == pytest.approx(5021.96)
    assert x["freq_mhz"] == {"E-Cluster": 1293, "P0-Cluster": 2507, "P1-Cluster": 2316, "GPU": 338}
    assert x["active_residency_pct"]["GPU"] == pytest.approx(1.63)


def test_powermetrics_gpu_only_block_has_no_total():
    # macOS 26, gpu_power sampler alone: GPU Power is not SoC power, so no watts, and a reason
    f = parse_powermetrics_text(_fixture("powermetrics", "macos26-m2pro-gpu-only.txt"))
    assert f is not None and f["watts"] is None
    assert f["rails"] == pytest.approx({"GPU": 0.004})
    assert f["extra"]["problem"] == "no Combined, Package or CPU Power line (has: GPU)"
    assert parse_powermetrics_text("Machine model: Mac14,2\nOS version: 25C56\n") is None


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
