"""Tests for edgemoe.sampling: parsers on real tool output, RAPL on a fake sysfs, energy math,
and the tegrastats sampling loop against a replaying stand-in executable."""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import pytest

from edgemoe import sampling as S
from edgemoe.sampling import Sample

HERE = Path(__file__).resolve().parent
FIX = HERE / "fixtures"
REPLAY = HERE / "bin" / "replay-tegrastats"
MIB = 1024 * 1024


@pytest.fixture
def replay_exe(tmp_path) -> str:
    """tests/bin/replay-tegrastats run by this interpreter (no reliance on python3 on PATH)."""
    assert os.access(REPLAY, os.X_OK)
    w = tmp_path / "tegrastats"
    w.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPLAY}" "$@"\n')
    w.chmod(0o755)
    return str(w)


def _line(name: str) -> str:
    return (FIX / "tegrastats" / name).read_text().strip()


# ---------------------------------------------------------------- tegrastats parser


def test_tegrastats_jp6_user_fixture():
    f = S.parse_tegrastats_line(_line("orin-nano-jp6-user.txt"))
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
    f = S.parse_tegrastats_line(_line("orin-nano-jp6-root.txt"))
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
    f = S.parse_tegrastats_line(jp5)
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
    f = S.parse_tegrastats_line(nano)
    assert f["watts"] == pytest.approx(2.15)
    assert f["extra"]["watts_source"] == "POM_5V_IN"
    assert set(f["rails"]) == {"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}  # not RAM/SWAP/IRAM
    assert f["extra"]["gr3d_freq_mhz"] == 76
    assert f["ram_used_bytes"] == 1783 * MIB

    agx = "RAM 2448/30536MB CPU [1%@729] VDD_GPU_SOC 3180mW/3180mW VDD_CPU_CV 397mW/397mW VIN_SYS_5V0 2524mW/2524mW"
    f = S.parse_tegrastats_line(agx)
    assert f["watts"] == pytest.approx(3.18 + 0.397 + 2.524)
    assert f["extra"]["watts_source"] == "sum of rails"

    assert S.parse_tegrastats_line("") is None
    assert S.parse_tegrastats_line("tegrastats: some warning") is None


# ---------------------------------------------------------------- powermetrics parser


def _pm_text() -> str:
    return (FIX / "powermetrics" / "m2-air-text.txt").read_text()


def test_powermetrics_real_fixture():
    f = S.parse_powermetrics_text(_pm_text())
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
    f = S.parse_powermetrics_text(text)
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
    f = S.parse_powermetrics_text("\n".join(out))
    assert f["extra"]["freq_mhz"] == {"E-Cluster": 1248, "P0-Cluster": 1145, "P1-Cluster": 2100}
    assert f["rails"]["P0-Cluster"] == pytest.approx(0.5)
    assert f["rails"]["P1-Cluster"] == pytest.approx(0.223)
    # clusters are parts of CPU Power: not double-counted
    assert f["watts"] == pytest.approx(1.172)


def test_powermetrics_block_split_and_sampler_stamps(tmp_path):
    # real output prints the Machine model / OS version preamble once, then one block per sample
    second = _pm_text()[_pm_text().index("*** Sampled"):]
    two = _pm_text() + "\n" + second.replace("823 mW", "900 mW").replace("1172 mW", "1249 mW")
    blocks = S.split_powermetrics_blocks(two)
    assert [S.parse_powermetrics_text(b)["watts"] for b in blocks] == pytest.approx([1.172, 1.249])
    # the sampler's line handler: a block is stamped with its last line, flushed at the next header
    pm = S.PowermetricsSampler(interval_ms=1000, executable="powermetrics", system_ram=False)
    for i, ln in enumerate(two.splitlines()):
        pm._on_line(1000 + i, ln)
    pm._on_eof()
    assert [s.watts for s in pm.samples] == pytest.approx([1.172, 1.249])
    n_first = len(_pm_text().splitlines())
    assert pm.samples[0].t_ns == 1000 + n_first - 1


def test_powermetrics_unavailable_reason():
    ok, why = S.PowermetricsSampler.available(executable="definitely-not-powermetrics-xyz")
    assert not ok and "not found" in why


# ---------------------------------------------------------------- nvpmodel


def test_parse_nvpmodel_query():
    assert S.parse_nvpmodel_query("NV Power Mode: 15W\n0\n") == {"name": "15W", "id": 0}
    txt = "NVPM WARN: fan mode is not set!\nNV Power Mode: MAXN_SUPER\n2\n"
    assert S.parse_nvpmodel_query(txt) == {"name": "MAXN_SUPER", "id": 2}
    assert S.parse_nvpmodel_query("command not found") is None


def test_jetson_power_mode_not_a_jetson(tmp_path):
    assert S.jetson_power_mode("no-such-nvpmodel-xyz", tegra_release=str(tmp_path / "none")) is None


def test_jetson_power_mode_with_standin(tmp_path):
    exe = tmp_path / "nvpmodel"
    exe.write_text(f"#!{sys.executable}\nprint('NV Power Mode: 7W\\n1')\n")
    exe.chmod(0o755)
    assert S.jetson_power_mode(str(exe)) == {"name": "7W", "id": 1}


# ---------------------------------------------------------------- RAPL


def _zone(d: Path, name: str, uj: int, max_uj: int = 1_000_000_000) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


class FakeClock:
    def __init__(self, t: int = 0):
        self.t = t

    def __call__(self) -> int:
        return self.t


def test_rapl_fake_sysfs_with_wrap(tmp_path):
    p0 = _zone(tmp_path / "intel-rapl:0", "package-0", 999_000_000)
    core = _zone(tmp_path / "intel-rapl:0:0", "core", 10)
    p1 = _zone(tmp_path / "intel-rapl:1", "package-1", 5_000_000)
    (tmp_path / "thermal" / "thermal_zone0").mkdir(parents=True)
    (tmp_path / "thermal" / "thermal_zone0" / "type").write_text("x86_pkg_temp\n")
    (tmp_path / "thermal" / "thermal_zone0" / "temp").write_text("61500\n")

    ok, why = S.RaplSampler.available(root=tmp_path)
    assert ok, why
    clock = FakeClock(0)
    r = S.RaplSampler(100, root=tmp_path, thermal_root=tmp_path / "thermal", clock=clock, system_ram=False)
    r._open()
    s0 = r.sample_now()
    assert s0.energy_j == 0.0 and s0.watts is None
    assert s0.temps_c == {"x86_pkg_temp": 61.5}

    # 0.5 s later: package-0 wrapped (999 J -> 1 J past the 1000 J range => +2 J), package-1 +1 J
    clock.t = 500_000_000
    (p0 / "energy_uj").write_text("1000000\n")
    (p1 / "energy_uj").write_text("6000000\n")
    (core / "energy_uj").write_text("500010\n")
    s1 = r.sample_now()
    assert s1.energy_j == pytest.approx(3.0)
    assert s1.watts == pytest.approx(6.0)  # 3 J / 0.5 s; the core subzone is not added
    assert s1.rails["package-0"] == pytest.approx(4.0)
    assert s1.rails["package-0/core"] == pytest.approx(1.0)

    clock.t = 1_000_000_000
    (p0 / "energy_uj").write_text("3000000\n")
    (p1 / "energy_uj").write_text("7000000\n")
    s2 = r.sample_now()
    assert s2.energy_j == pytest.approx(6.0)
    # counter-difference energy over a window inside the trace: 6 W constant
    e = S.energy_joules(r.samples, 250_000_000, 1_000_000_000, min_samples=1)
    assert e.method == "counter"
    assert e.joules == pytest.approx(0.5 * 3.0 + 3.0)  # [0.25,0.5]: half of 3 J; [0.5,1]: 3 J


def test_rapl_unavailable(tmp_path):
    ok, why = S.RaplSampler.available(root=tmp_path)
    assert not ok and "no intel-rapl" in why
    _zone(tmp_path / "intel-rapl:0", "package-0", 1)
    os.chmod(tmp_path / "intel-rapl:0" / "energy_uj", 0)
    if os.geteuid() != 0:
        ok, why = S.RaplSampler.available(root=tmp_path)
        assert not ok and "not readable" in why
    s = S.make_sampler("rapl", root=tmp_path / "missing")
    assert isinstance(s, S.NullSampler) and "rapl unavailable" in s.reason
    with pytest.raises(S.SamplerUnavailable):
        S.make_sampler("rapl", strict=True, root=tmp_path / "missing")


def test_rapl_thread_loop(tmp_path):
    _zone(tmp_path / "intel-rapl:0", "package-0", 0)
    r = S.RaplSampler(10, root=tmp_path, thermal_root=None)
    r.start()
    time.sleep(0.1)
    out = r.stop()
    assert 3 <= len(out) <= 15  # first reading at start, last at stop
    assert all(s.energy_j == 0.0 for s in out)


# ---------------------------------------------------------------- NVML (fake module)


def _fake_nvml(energy_supported: bool = True):
    state = {"mj": 1_000_000, "inited": 0}

    class NVMLError(Exception):
        pass

    def energy(h):
        if not energy_supported:
            raise NVMLError("Not Supported")
        state["mj"] += 250  # 250 mJ per call
        return state["mj"]

    m = types.SimpleNamespace(
        NVML_TEMPERATURE_GPU=0, NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2,
        nvmlInit=lambda: state.__setitem__("inited", state["inited"] + 1),
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: "h0",
        nvmlDeviceGetTotalEnergyConsumption=energy,
        nvmlDeviceGetPowerUsage=lambda h: 150_000,
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=2 * 1024**3, total=80 * 1024**3),
        nvmlDeviceGetTemperature=lambda h, s: 57,
        nvmlDeviceGetClockInfo=lambda h, c: 1980 if c == 1 else 2619,
        nvmlDeviceGetCurrentClocksThrottleReasons=lambda h: 0x4,
    )
    return m


def test_nvml_with_fake_module():
    nv = _fake_nvml()
    assert S.NvmlSampler.available(nvml_module=nv)[0]
    s = S.NvmlSampler(100, nvml_module=nv, system_ram=False, clock=FakeClock(0))
    s._open()
    a = s.sample_now()
    assert s.energy_supported and "energy counter" in s.what
    assert a.energy_j == pytest.approx(0.25) and a.watts == pytest.approx(150.0)
    assert a.gpu_mem_bytes == 2 * 1024**3 and a.temps_c == {"gpu": 57.0}
    assert a.extra["sm_clock_mhz"] == 1980 and a.extra["throttle_reasons"] == 4

    s2 = S.NvmlSampler(100, nvml_module=_fake_nvml(energy_supported=False), system_ram=False)
    s2._open()
    b = s2.sample_now()
    assert s2.energy_supported is False and b.energy_j is None and b.watts == pytest.approx(150.0)


def test_nvml_unavailable_without_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    ok, why = S.NvmlSampler.available()
    assert not ok and "pynvml" in why
    s = S.make_sampler("nvml")
    assert isinstance(s, S.NullSampler) and "pynvml" in s.reason


# ---------------------------------------------------------------- factory, null


def test_make_sampler_kinds(replay_exe):
    assert isinstance(S.make_sampler("none"), S.NullSampler)
    n = S.make_sampler("none")
    n.start()
    assert n.stop() == [] and n.reason
    t = S.make_sampler("tegrastats", executable=replay_exe, interval_ms=50)
    assert isinstance(t, S.TegrastatsSampler) and t.interval_ms == 50
    t2 = S.make_sampler("tegrastats", executable="no-such-tegrastats-xyz")
    assert isinstance(t2, S.NullSampler) and "not found" in t2.reason
    with pytest.raises(ValueError):
        S.make_sampler("bogus")


# ---------------------------------------------------------------- energy math


def _trace(points):  # [(t_s, watts)] -> samples
    return [Sample(t_ns=int(round(t * 1e9)), watts=w) for t, w in points]


def test_energy_trapezoid_known_answer():
    # ramp 0 W at t=0 to 10 W at t=1, then constant 10 W to t=2
    tr = _trace([(0.0, 0.0), (0.5, 5.0), (1.0, 10.0), (1.5, 10.0), (2.0, 10.0)])
    assert S.energy_joules(tr, 0, 2_000_000_000).joules == pytest.approx(5.0 + 10.0)
    # window clipped mid-segment: [0.25, 1.75] = ramp from 2.5 W (0.25..1: 0.75 s avg 6.25) + 7.5 J
    e = S.energy_joules(tr, 250_000_000, 1_750_000_000)
    assert e.joules == pytest.approx(0.75 * 6.25 + 7.5)
    assert e.method == "trapezoid" and e.n_samples == 3
    assert e.mean_watts == pytest.approx(e.joules / 1.5)


def test_energy_missing_cases():
    tr = _trace([(0.0, 5.0), (0.1, 5.0), (0.2, 5.0)])
    e = S.energy_joules(tr, 50_000_000, 60_000_000)
    assert e.missing and "too few samples" in e.reason and e.joules is None
    e = S.energy_joules(tr, 0, 2_000_000_000)
    assert e.missing and "not covered" in e.reason
    e = S.energy_joules([Sample(t_ns=0), Sample(t_ns=10)], 0, 10)
    assert e.missing and "no power" in e.reason
    j = S.joules_per_token([], (0, 1_000_000_000), 10, 5.0)
    assert j.status == "missing" and j.raw_j_per_token is None and j.net_j_per_token is None
    assert j.to_record()["energy_missing_reason"] == "no power or energy readings"
    j = S.joules_per_token(tr, (0, 200_000_000), 0, 5.0)
    assert j.missing and "no tokens" in j.reason


def test_joules_per_token_and_idle():
    idle = _trace([(t / 10, 5.0 + (0.5 if t % 2 else -0.5)) for t in range(10)])
    assert S.idle_baseline_watts(idle) == pytest.approx(5.0)
    assert S.idle_baseline_watts([]) is None
    gen = _trace([(1.0 + t / 10, 9.0) for t in range(21)])  # 9 W for 2 s
    j = S.joules_per_token(idle + gen, (1_000_000_000, 3_000_000_000), 40, 5.0)
    assert j.status == "ok" and j.method == "trapezoid"
    assert j.energy_j == pytest.approx(18.0)
    assert j.raw_j_per_token == pytest.approx(18.0 / 40)
    assert j.net_j_per_token == pytest.approx((18.0 - 10.0) / 40)
    j2 = S.joules_per_token(gen, (1_000_000_000, 3_000_000_000), 40, None)
    assert j2.status == "ok" and j2.net_j_per_token is None and j2.net_reason == "no idle baseline"


def test_peak_temperature_and_throttle():
    a = Sample(0, temps_c={"cpu": 50.0, "tj": 52.0, "pmic": 100.0}, extra={"gr3d_freq_mhz": 621})
    b = Sample(1, temps_c={"cpu": 60.0, "tj": 61.0}, extra={"gr3d_freq_mhz": 306})
    assert S.peak_temperature([a, b]) == (61.0, "tj")
    c = Sample(0, temps_c={"pmic": 100.0, "cpu": 40.0, "gpu_x": 45.0})
    assert S.peak_temperature([c]) == (45.0, "gpu_x")
    v, why = S.peak_temperature([Sample(0)])
    assert v is None and why
    t = S.throttle_summary([a, b])
    assert t["gpu_freq_mhz_min"] == 306 and t["gpu_freq_mhz_max"] == 621
    pm = [Sample(0, extra={"thermal_pressure": "Nominal"}), Sample(1, extra={"thermal_pressure": "Heavy"})]
    assert S.throttle_summary(pm)["thermal_pressure_worst"] == "Heavy"


# ---------------------------------------------------------------- tegrastats loop (stand-in)


def test_tegrastats_sampler_collects_at_interval(replay_exe):
    ts = S.TegrastatsSampler(interval_ms=20, executable=replay_exe)
    assert ts.check()[0]
    ts.start()
    deadline = time.monotonic() + 5
    while not ts.snapshot() and time.monotonic() < deadline:  # stand-in start-up (python import)
        time.sleep(0.005)
    first = ts.snapshot()[0].t_ns
    time.sleep(0.5)
    out = ts.stop()
    assert ts.error is None and ts.n_unparsed == 0
    # the stand-in prints on an absolute 20 ms schedule: 0.5 s after the first line -> ~26 lines
    expected = (ts.stopped_ns - first) // 20_000_000 + 1
    assert expected >= 25
    assert abs(len(out) - expected) <= 2, (len(out), expected)
    mean_step_ms = (out[-1].t_ns - out[0].t_ns) / (len(out) - 1) / 1e6
    assert 17 <= mean_step_ms <= 23, mean_step_ms
    # replayed fixtures alternate root/user lines
    assert {round(s.watts, 3) for s in out} == {12.479, 4.824}
    assert all(ts.started_ns <= s.t_ns <= ts.stopped_ns for s in out)


def test_tegrastats_exec_failure_reports_error(tmp_path):
    bad = tmp_path / "tegrastats"
    bad.write_text(f"#!{sys.executable}\nimport sys; sys.stderr.write('no permission\\n'); sys.exit(3)\n")
    bad.chmod(0o755)
    ts = S.TegrastatsSampler(interval_ms=20, executable=str(bad))
    ts.start()
    time.sleep(0.3)
    assert ts.stop() == []
    assert "rc=3" in ts.error and "no permission" in ts.error


def test_joules_per_token_through_tegrastats_replay(tmp_path, replay_exe):
    base = _line("orin-nano-jp6-user.txt")
    idle_line = base.replace("VDD_IN 4824mW/4824mW", "VDD_IN 5000mW/5000mW")
    busy_line = base.replace("VDD_IN 4824mW/4824mW", "VDD_IN 9000mW/9000mW")
    n_idle, n_busy, interval = 10, 25, 20
    trace = tmp_path / "trace.txt"
    trace.write_text("\n".join([idle_line] * n_idle + [busy_line] * n_busy + [idle_line] * 5) + "\n")

    ts = S.TegrastatsSampler(interval, executable=replay_exe, extra_args=["--replay", str(trace), "--no-loop"])
    ts.start()
    deadline = time.monotonic() + 5
    while len(ts.snapshot()) < n_idle + n_busy + 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    out = ts.stop()
    assert len(out) == n_idle + n_busy + 5
    busy = [s for s in out if s.watts == pytest.approx(9.0)]
    assert len(busy) == n_busy
    window = (busy[0].t_ns, busy[-1].t_ns)  # the "generation" window, as a runner would mark it
    idle_w = S.idle_baseline_watts(out, t_end_ns=busy[0].t_ns - 1)
    assert idle_w == pytest.approx(5.0)
    n_tokens = 48
    j = S.joules_per_token(out, window, n_tokens, idle_w)
    dur = (n_busy - 1) * interval / 1000  # 0.48 s of replayed 9 W
    assert j.status == "ok"
    assert j.window_s == pytest.approx(dur, rel=0.15)
    assert j.mean_watts == pytest.approx(9.0)
    assert j.raw_j_per_token == pytest.approx(9.0 * dur / n_tokens, rel=0.15)
    assert j.net_j_per_token == pytest.approx(4.0 * dur / n_tokens, rel=0.15)
    assert j.net_j_per_token == pytest.approx(4.0 * j.window_s / n_tokens, rel=1e-9)
    assert S.peak_temperature(out) == (50.25, "tj")
