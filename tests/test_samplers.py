"""Tests for the samplers and make_sampler: RAPL on a fake sysfs, NVML through a fake module, the
powermetrics line handler, and the tegrastats sampling loop against a replaying stand-in
executable (through to joules per token)."""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import pytest

from edgemoe.device_tools import parse_powermetrics_text, split_powermetrics_blocks
from edgemoe.energy import energy_joules, idle_baseline_watts, joules_per_token
from edgemoe.samplers import make_sampler
from edgemoe.samplers_polling import NvmlSampler, RaplSampler
from edgemoe.samplers_process import PowermetricsSampler, TegrastatsSampler
from edgemoe.telemetry import NullSampler, SamplerUnavailable, shorten
from edgemoe.thermal import peak_temperature

HERE = Path(__file__).resolve().parent
FIX = HERE / "fixtures"
REPLAY = HERE / "bin" / "replay-tegrastats"


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


def _fixture(kind: str, name: str) -> str:
    """A fixture under fixtures/<kind>/formats/ without its '#' source header."""
    text = (FIX / kind / "formats" / name).read_text()
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith("#")).strip("\n")


# ---------------------------------------------------------------- powermetrics sampler


def _pm_text() -> str:
    return (FIX / "powermetrics" / "m2-air-text.txt").read_text()


def test_powermetrics_block_split_and_sampler_stamps(tmp_path):
    # real output prints the Machine model / OS version preamble once, then one block per sample
    second = _pm_text()[_pm_text().index("*** Sampled"):]
    two = _pm_text() + "\n" + second.replace("823 mW", "900 mW").replace("1172 mW", "1249 mW")
    blocks = split_powermetrics_blocks(two)
    assert [parse_powermetrics_text(b)["watts"] for b in blocks] == pytest.approx([1.172, 1.249])
    # the sampler's line handler: a block is stamped with its last line, flushed at the next header
    pm = PowermetricsSampler(interval_ms=1000, executable="powermetrics", system_ram=False)
    for i, ln in enumerate(two.splitlines()):
        pm._on_line(1000 + i, ln)
    pm._on_eof()
    assert [s.watts for s in pm.samples] == pytest.approx([1.172, 1.249])
    n_first = len(_pm_text().splitlines())
    assert pm.samples[0].t_ns == 1000 + n_first - 1


def test_powermetrics_sampler_names_blocks_without_a_total():
    pm = PowermetricsSampler(interval_ms=500, executable="powermetrics", system_ram=False)
    good = _pm_text().splitlines()
    for i, ln in enumerate(good):
        pm._on_line(i, ln)
    assert pm.problem is None  # the preamble (Machine model, OS version) is no problem
    gpu_only = _fixture("powermetrics", "macos26-m2pro-gpu-only.txt").splitlines()
    for i, ln in enumerate(gpu_only + gpu_only[3:], start=100):
        pm._on_line(i, ln)
    pm._on_eof()
    assert [s.watts for s in pm.samples] == pytest.approx([1.172, None, None])
    assert pm.n_unparsed == 2
    assert pm.problem == ("powermetrics block not understood (no Combined, Package or CPU Power line "
                          "(has: GPU)): GPU Power: 4 mW")
    assert pm.warnings == [pm.problem]
    assert pm.describe()["problem"] == pm.problem


def test_powermetrics_unavailable_reason():
    ok, why = PowermetricsSampler.available(executable="definitely-not-powermetrics-xyz")
    assert not ok and "not found" in why


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

    ok, why = RaplSampler.available(root=tmp_path)
    assert ok, why
    clock = FakeClock(0)
    r = RaplSampler(100, root=tmp_path, thermal_root=tmp_path / "thermal", clock=clock, system_ram=False)
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
    e = energy_joules(r.samples, 250_000_000, 1_000_000_000, min_samples=1)
    assert e.method == "counter"
    assert e.joules == pytest.approx(0.5 * 3.0 + 3.0)  # [0.25,0.5]: half of 3 J; [0.5,1]: 3 J


def test_rapl_unavailable(tmp_path):
    ok, why = RaplSampler.available(root=tmp_path)
    assert not ok and "no intel-rapl" in why
    _zone(tmp_path / "intel-rapl:0", "package-0", 1)
    os.chmod(tmp_path / "intel-rapl:0" / "energy_uj", 0)
    if os.geteuid() != 0:
        ok, why = RaplSampler.available(root=tmp_path)
        assert not ok and "not readable" in why
    s = make_sampler("rapl", root=tmp_path / "missing")
    assert isinstance(s, NullSampler) and "rapl unavailable" in s.reason
    with pytest.raises(SamplerUnavailable):
        make_sampler("rapl", strict=True, root=tmp_path / "missing")


def test_rapl_thread_loop(tmp_path):
    _zone(tmp_path / "intel-rapl:0", "package-0", 0)
    r = RaplSampler(10, root=tmp_path, thermal_root=None)
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
    assert NvmlSampler.available(nvml_module=nv)[0]
    s = NvmlSampler(100, nvml_module=nv, system_ram=False, clock=FakeClock(0))
    s._open()
    a = s.sample_now()
    assert s.energy_supported and "energy counter" in s.what
    assert a.energy_j == pytest.approx(0.25) and a.watts == pytest.approx(150.0)
    assert a.gpu_mem_bytes == 2 * 1024**3 and a.temps_c == {"gpu": 57.0}
    assert a.extra["sm_clock_mhz"] == 1980 and a.extra["throttle_reasons"] == 4

    s2 = NvmlSampler(100, nvml_module=_fake_nvml(energy_supported=False), system_ram=False)
    s2._open()
    b = s2.sample_now()
    assert s2.energy_supported is False and b.energy_j is None and b.watts == pytest.approx(150.0)


def test_nvml_unavailable_without_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    ok, why = NvmlSampler.available()
    assert not ok and "pynvml" in why
    s = make_sampler("nvml")
    assert isinstance(s, NullSampler) and "pynvml" in s.reason


# ---------------------------------------------------------------- factory, null


def test_make_sampler_kinds(replay_exe):
    assert isinstance(make_sampler("none"), NullSampler)
    n = make_sampler("none")
    n.start()
    assert n.stop() == [] and n.reason
    t = make_sampler("tegrastats", executable=replay_exe, interval_ms=50)
    assert isinstance(t, TegrastatsSampler) and t.interval_ms == 50
    t2 = make_sampler("tegrastats", executable="no-such-tegrastats-xyz")
    assert isinstance(t2, NullSampler) and "not found" in t2.reason
    with pytest.raises(ValueError):
        make_sampler("bogus")


# ---------------------------------------------------------------- tegrastats loop (stand-in)


def test_tegrastats_sampler_collects_at_interval(replay_exe):
    ts = TegrastatsSampler(interval_ms=20, executable=replay_exe)
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
    ts = TegrastatsSampler(interval_ms=20, executable=str(bad))
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

    ts = TegrastatsSampler(interval, executable=replay_exe, extra_args=["--replay", str(trace), "--no-loop"])
    ts.start()
    deadline = time.monotonic() + 5
    while len(ts.snapshot()) < n_idle + n_busy + 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    out = ts.stop()
    assert len(out) == n_idle + n_busy + 5
    busy = [s for s in out if s.watts == pytest.approx(9.0)]
    assert len(busy) == n_busy
    window = (busy[0].t_ns, busy[-1].t_ns)  # the "generation" window, as a runner would mark it
    idle_w = idle_baseline_watts(out, t_end_ns=busy[0].t_ns - 1)
    assert idle_w == pytest.approx(5.0)
    n_tokens = 48
    j = joules_per_token(out, window, n_tokens, idle_w)
    dur = (n_busy - 1) * interval / 1000  # 0.48 s of replayed 9 W
    assert j.status == "ok"
    assert j.window_s == pytest.approx(dur, rel=0.15)
    assert j.mean_watts == pytest.approx(9.0)
    assert j.raw_j_per_token == pytest.approx(9.0 * dur / n_tokens, rel=0.15)
    assert j.net_j_per_token == pytest.approx(4.0 * dur / n_tokens, rel=0.15)
    assert j.net_j_per_token == pytest.approx(4.0 * j.window_s / n_tokens, rel=1e-9)
    assert peak_temperature(out) == (50.25, "tj")


def test_tegrastats_sampler_names_lines_it_does_not_understand():
    ts = TegrastatsSampler(interval_ms=100, executable="tegrastats")
    ts._on_line(1, _line("orin-nano-jp6-user.txt"))
    assert ts.problem is None and ts.warnings == []
    old = _fixture("tegrastats", "r28-tx1-old-format.txt")
    ts._on_line(2, old)  # tegrastats-like but no power: a sample without watts, and a reason
    ts._on_line(3, "tegrastats: some new banner")  # nothing tegrastats-like: no sample
    ts._on_line(4, "")
    assert [s.watts for s in ts.samples] == pytest.approx([4.824, None])
    assert ts.n_unparsed == 2
    assert ts.problem == f"tegrastats line not understood (no power rail in the line): {old}"
    assert ts.unparsed_lines == [old, "tegrastats: some new banner"]
    assert ts.warnings[1] == "tegrastats line not understood: tegrastats: some new banner"
    assert ts.energy_reason("no power or energy readings") == ts.problem + " [no power or energy readings]"
    long = "X" * 300
    ts._on_line(5, long)
    assert len(ts.unparsed_lines[-1]) == 160 and ts.unparsed_lines[-1].endswith("...")
    assert make_sampler("none").energy_reason("no counter") == "no counter"


def test_tegrastats_sampler_warns_without_input_rail():
    ts = TegrastatsSampler(interval_ms=100, executable="tegrastats")
    ts._on_line(1, _fixture("tegrastats", "jp7-r38.4-thor.txt"))
    assert ts.samples[0].watts == pytest.approx(8.291) and ts.problem is None
    assert ts.warnings == ["tegrastats: no input-power rail (VDD_IN, POM_5V_IN, VIN); watts is the sum of "
                           "the rails VDD_GPU+VDD_CPU_SOC_MSS+VIN_SYS_5V0, a lower bound of module power"]


def test_cell_energy_reason_for_lines_not_understood(tmp_path, replay_exe):
    """A real JetPack 4.6 line without rails, replayed: the samples carry no power, and the reason a
    cell would record names the line instead of a bare "no power or energy readings"."""
    line = _fixture("tegrastats", "jp46-r32-tx2-no-rails.txt")
    trace = tmp_path / "trace.txt"
    trace.write_text((line + "\n") * 12)
    ts = TegrastatsSampler(20, executable=replay_exe, extra_args=["--replay", str(trace), "--no-loop"])
    ts.start()
    deadline = time.monotonic() + 5
    while len(ts.snapshot()) < 12 and time.monotonic() < deadline:
        time.sleep(0.02)
    out = ts.stop()
    assert len(out) == 12 and all(s.watts is None for s in out)
    assert all(s.extra["problem"] == "no power rail in the line" for s in out)
    assert ts.n_unparsed == 12 and len(ts.unparsed_lines) == 3
    assert ts.problem == f"tegrastats line not understood (no power rail in the line): {shorten(line)}"
    assert ts.problem.endswith("...") and len(shorten(line)) == 160
    assert ts.error == f"{replay_exe} gave no power reading: {ts.problem}"
    e = energy_joules(out, out[2].t_ns, out[-2].t_ns)
    assert e.missing and e.reason == "no power or energy readings"
    reason = ts.energy_reason(e.reason)  # what cells.run_bench_cell should record (see report)
    assert reason.startswith("tegrastats line not understood (no power rail in the line): RAM 1689/3825MB")
    assert reason.endswith("[no power or energy readings]")
