"""Emulated memory ceilings: regime names, config checks, the cgroup layer (on fake cgroup trees,
and for real where this host has a writable memory controller), page-cache eviction, the
read-bytes window; the integration test runs the smoke twins under two ceilings end to end."""
import copy
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import snakemake
from edgemoe import memcg, regimes
from edgemoe.config import ConfigError, Experiment
from edgemoe.process import bytes_in_window
from edgemoe.regimes import Regime, parse_variant, variant_name


# ---- names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("regime, name", [(Regime(None, True), "tg32-host-mmap"), (Regime(4.0, False), "tg32-4g-nommap"),
                                          (Regime(2.5, True), "tg32-2p5g-mmap")])
def test_variant_names_round_trip(regime, name):
    assert variant_name("tg32", regime) == name
    assert parse_variant(name) == ("tg32", regime)


def test_a_plain_test_name_is_not_a_variant():
    assert parse_variant("tg32") is None
    assert parse_variant("pp64-tg16") is None


# ---- config --------------------------------------------------------------------------------------
def _with_regimes(cfg, **regimes_cfg):
    cfg = copy.deepcopy(cfg)
    cfg["experiment"]["regimes"] = regimes_cfg
    cfg["experiment"]["rounds"] = {"enabled": False}
    return cfg


@pytest.fixture
def cgroups_ok(monkeypatch):
    monkeypatch.setattr(memcg, "probe", lambda *a, **k: memcg.Support(1, Path("/nonexistent")))


def test_every_test_runs_once_per_ceiling_and_load_mode(smoke_config, cgroups_ok):
    exp = Experiment(_with_regimes(smoke_config, ceilings=["host", 4], load_modes=["mmap", "no-mmap"]), "linux-cpu")
    assert sorted(exp.tests) == ["pp64-tg16-4g-mmap", "pp64-tg16-4g-nommap", "pp64-tg16-host-mmap",
                                 "pp64-tg16-host-nommap"]
    assert exp.memory_regime("linux-cpu", "pp64-tg16-4g-nommap") == (True, 4_000_000_000, False)
    assert exp.memory_regime("linux-cpu", "pp64-tg16-host-mmap") == (True, None, True)


def test_without_regimes_the_tests_and_their_identity_are_unchanged(smoke_config):
    exp = Experiment(copy.deepcopy(smoke_config), "linux-cpu")
    assert list(exp.tests) == ["pp64-tg16"]
    assert exp.memory_regime("linux-cpu", "pp64-tg16") == (False, None, True)
    # the rounds design hashes str(test): the pre-regimes form, so design ids did not move
    assert str(exp.tests["pp64-tg16"]) == "Test(name='pp64-tg16', n_prompt=64, n_gen=16, every=1, repetitions=None)"


def test_a_device_profile_can_emulate_its_memory(smoke_config, cgroups_ok):
    cfg = copy.deepcopy(smoke_config)
    cfg["devices"]["linux-cpu"]["emulate"] = {"memory_gb": 8}
    exp = Experiment(cfg, "linux-cpu")
    assert exp.memory_regime("linux-cpu", "pp64-tg16") == (True, 8_000_000_000, True)
    assert exp.devices["linux-cpu"].memory_ceiling_bytes <= 8_000_000_000


def test_a_ceiling_below_the_process_minimum_is_a_named_error(smoke_config, cgroups_ok):
    with pytest.raises(ConfigError, match=r"experiment\.regimes\.ceilings\[1\]: 0\.1 GB is below"):
        Experiment(_with_regimes(smoke_config, ceilings=["host", 0.1]), "linux-cpu")
    cfg = copy.deepcopy(smoke_config)
    cfg["devices"]["linux-cpu"]["emulate"] = {"memory_gb": 0.05}
    with pytest.raises(ConfigError, match=r"devices\.linux-cpu\.emulate\.memory_gb: 0\.05 GB is below"):
        Experiment(cfg, "linux-cpu")


def test_a_ceiling_on_a_host_without_a_memory_cgroup_is_a_named_error(smoke_config, monkeypatch, tmp_path):
    (tmp_path / "cgroup").write_text("0::/\n")
    real_probe = memcg.probe
    monkeypatch.setattr(memcg, "probe", lambda: real_probe(tmp_path / "nothing", tmp_path / "cgroup", "Linux"))
    with pytest.raises(ConfigError, match=r"experiment\.regimes\.ceilings: cannot emulate .* no memory cgroup"):
        Experiment(_with_regimes(smoke_config, ceilings=[4]), "linux-cpu")


def test_a_ceiling_on_macos_is_a_named_error(smoke_config, monkeypatch, tmp_path):
    real_probe = memcg.probe
    monkeypatch.setattr(memcg, "probe", lambda: real_probe(system="Darwin"))
    with pytest.raises(ConfigError, match=r"experiment\.regimes\.ceilings: .*Linux memory cgroups; this host runs Darwin"):
        Experiment(_with_regimes(smoke_config, ceilings=[8]), "linux-cpu")


def test_released_data_needs_no_cgroup(smoke_config, monkeypatch):
    def no_probe(*a, **k):
        raise AssertionError("probed")

    monkeypatch.setattr(memcg, "probe", no_probe)
    cfg = _with_regimes(smoke_config, ceilings=[8])
    cfg["runs"] = "released"  # config.yaml names the shipped release
    exp = Experiment(cfg)
    assert exp.device is None and "pp64-tg16-8g-mmap" in exp.tests


# ---- the cgroup layer on fake trees ----------------------------------------------------------------
def _v1_tree(root: Path) -> Path:
    (root / "memory/user").mkdir(parents=True)
    (root / "memory/memory.limit_in_bytes").write_text("9223372036854771712\n")
    proc = root / "proc-cgroup"
    proc.write_text("4:memory:/user\n0::/\n")
    return proc


def test_probe_finds_cgroup_v1_under_the_process_own_cgroup(tmp_path):
    proc = _v1_tree(tmp_path)
    assert memcg.probe(tmp_path, proc, "Linux") == memcg.Support(1, tmp_path / "memory/user/edgemoe")


def test_probe_finds_cgroup_v2_and_makes_siblings_of_a_cgroup_with_processes(tmp_path):
    (tmp_path / "app.slice/me").mkdir(parents=True)
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    (tmp_path / "app.slice/me/cgroup.controllers").write_text("cpu memory\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/app.slice/me\n")
    assert memcg.probe(tmp_path, proc, "Linux") == memcg.Support(2, tmp_path / "app.slice")


def test_probe_names_a_v2_hierarchy_without_the_memory_controller(tmp_path):
    (tmp_path / "unified/me").mkdir(parents=True)
    (tmp_path / "unified/cgroup.controllers").write_text("cpu pids\n")
    (tmp_path / "unified/me/cgroup.controllers").write_text("cpu\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/me\n")
    with pytest.raises(memcg.CeilingUnavailable, match="memory controller is not enabled"):
        memcg.probe(tmp_path, proc, "Linux")


def test_a_v2_cell_cgroup_sets_the_limit_without_swap_and_reads_peak_and_oom_kills(tmp_path):
    support = memcg.Support(2, tmp_path)
    with memcg.CellCgroup(support, 3_000_000_000, name="cell") as cg:
        assert (tmp_path / "cell/memory.max").read_text() == "3000000000"
        (tmp_path / "cell/memory.peak").write_text("2999000000\n")
        (tmp_path / "cell/memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
        assert cg.stats() == {"cgroup_peak_bytes": 2999000000, "cgroup_oom_kills": 1, "cgroup_limit_hits": 12}
        for f in (tmp_path / "cell").iterdir():
            f.unlink()  # a real cgroup's files vanish with it
    assert not (tmp_path / "cell").exists()


@pytest.fixture(scope="module")
def host_cgroups():
    try:
        return memcg.probe()
    except memcg.CeilingUnavailable as e:
        pytest.skip(f"no usable memory cgroup here: {e}")


def test_a_real_cell_cgroup_kills_a_child_over_its_ceiling_and_counts_it(host_cgroups):
    grab = [sys.executable, "-c", "b = bytearray(400 * 2**20)"]
    with memcg.CellCgroup(host_cgroups, 128 * 2**20) as cg:
        assert subprocess.run(grab, preexec_fn=cg.join).returncode == -9
        stats = cg.stats()
    assert stats["cgroup_oom_kills"] == 1 and stats["cgroup_peak_bytes"] <= 128 * 2**20
    with memcg.CellCgroup(host_cgroups, None) as cg:  # the 'host' ceiling: no limit, peak still read
        assert subprocess.run(grab, preexec_fn=cg.join).returncode == 0
        stats = cg.stats()
    assert stats["cgroup_oom_kills"] == 0 and stats["cgroup_peak_bytes"] >= 400 * 2**20


# ---- the model file's pages --------------------------------------------------------------------------
def test_eviction_empties_the_page_cache_of_a_file_and_mincore_sees_it(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(os.urandom(8 * 2**20))
    os.sync()
    f.read_bytes()
    assert memcg.resident_bytes(f) == 8 * 2**20  # just written and read: all cached
    if _on_tmpfs(tmp_path):
        pytest.skip("tmpfs keeps its pages: nothing to evict to")
    assert memcg.evict_and_check(f) == 0 and memcg.resident_bytes(f) == 0


def _on_tmpfs(path: Path) -> bool:
    best = ("", "")
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, fstype, *_ = line.split()
        if str(path.resolve()).startswith(mount) and len(mount) > len(best[0]):
            best = (mount, fstype)
    return best[1] in ("tmpfs", "ramfs")


def test_pages_another_process_keeps_mapped_make_the_cell_fail_loudly(tmp_path, monkeypatch):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x" * 2**20)
    monkeypatch.setattr(memcg, "evict", lambda p: None)  # as if eviction could not drop them
    monkeypatch.setattr(memcg, "resident_bytes", lambda p: 2**20)
    with pytest.raises(RuntimeError, match="stay in the page cache after eviction"):
        memcg.evict_and_check(f)


# ---- bytes read in a window ----------------------------------------------------------------------------
def test_bytes_in_window_interpolates_between_samples():
    trace = [(0, 0), (10, 100), (20, 100), (30, 400)]
    assert bytes_in_window(trace, 15, 30) == 300
    assert bytes_in_window(trace, 5, 10) == 50
    assert bytes_in_window(trace, 10, 20) == 0
    assert bytes_in_window(trace, -5, 30) is None  # the trace starts after the window
    assert bytes_in_window([], 0, 1) is None


# ---- analysis ------------------------------------------------------------------------------------------
def test_regime_columns_come_from_the_records():
    runs = pd.DataFrame({
        "device": ["d"] * 3, "test": ["tg32-4g-nommap", "tg32-host-mmap", "tg32"],
        "memory_emulated_bytes": [4e9, None, None], "use_mmap": [False, True, True],
        "host_memory_bytes": [24e9] * 3,
    })
    cols = regimes.regime_columns(runs)
    assert cols[["test", "base_test", "ceiling", "ceiling_gb", "load_mode"]].values.tolist() == [
        ["tg32-4g-nommap", "tg32", "4g", 4.0, "no-mmap"], ["tg32-host-mmap", "tg32", "host", 24.0, "mmap"]]


# ---- end to end ------------------------------------------------------------------------------------------
CEILINGS = ["--configfile", "config/smoke.yaml", "tests/configs/ceilings-smoke.yaml"]


@pytest.mark.integration
def test_cells_under_emulated_ceilings_record_the_regime_and_the_analysis_shows_it(work, host_cgroups):
    from edgemoe.records import read_parquet

    snakemake(work, "figures/all", *CEILINGS)
    runs = read_parquet(work / "results/runs.parquet").to_pandas()
    cells = runs[runs["test"].str.startswith("tg8-")]
    assert set(cells["test"]) == {"tg8-host-mmap", "tg8-host-nommap", "tg8-0p25g-mmap", "tg8-0p25g-nommap"}
    assert (cells["status"] == "ok").all()
    assert (cells.loc[cells["test"].str.contains("0p25g"), "memory_emulated_bytes"] == 250_000_000).all()
    assert cells.loc[cells["test"].str.contains("host"), "memory_emulated_bytes"].isna().all()
    assert (cells["cgroup_peak_bytes"] > 0).all() and (cells["cgroup_oom_kills"] == 0).all()
    assert (cells["model_resident_bytes_before"] == 0).all()  # evicted, and mincore agrees
    assert (cells["use_mmap"] == cells["test"].str.endswith("-mmap")).all()
    # one settling repetition per cell, recorded as warm-up; the timed ones carry the read window
    per_cell = cells.groupby("cell_id")["warmup"].sum()
    assert (per_cell == 1).all()
    timed = cells[~cells["warmup"].astype(bool)]
    assert timed["storage_read_bytes_per_token"].notna().all()
    assert (timed["storage_read_bytes"] >= timed["storage_read_bytes_window"]).all()
    table = pd.read_csv(work / "figures/tables/regimes.csv")
    assert len(table) == 4 * 4 and set(table["load_mode"]) == {"mmap", "no-mmap"}
    assert (work / "figures/ceilings.png").stat().st_size > 10_000
    drawn = pd.read_csv(work / "figures/ceilings.csv")
    assert set(drawn["ceiling"]) == {"host", "0p25g"}


@pytest.mark.integration
@pytest.mark.parametrize("extra, env, message", [
    (["tests/configs/ceiling-too-low.yaml"], {}, r"experiment\.regimes\.ceilings\[0\]: 0\.1 GB"),
    ([], {"EDGEMOE_CGROUP_ROOT": "/nonexistent"}, r"experiment\.regimes\.ceilings: cannot emulate a memory ceiling"),
])
def test_a_ceiling_that_cannot_be_emulated_stops_before_any_job(work, extra, env, message):
    import re

    proc = snakemake(work, "figures/all", *CEILINGS, *extra, env=env, check=False)
    assert proc.returncode != 0
    assert re.search(message, proc.stdout + proc.stderr), (proc.stdout + proc.stderr)[-2000:]
    assert "rule round_cell" not in proc.stdout + proc.stderr
