"""The engine axis (edgemoe/engine_axis.py, edgemoe/engines_compare.py): which engines run, what
is refused before any job, and the estimates across engines."""
import copy

import numpy as np
import pandas as pd
import pytest
import yaml

from edgemoe import engines_compare as C
from edgemoe.config import ConfigError, Experiment
from edgemoe.engine_axis import EngineAxisError, check_architectures, check_git_reachable, engine_ids, \
    known_architectures
from edgemoe.rounds import Cell

from conftest import ROOT, _update


def _with(default_config, overlay: dict) -> dict:
    cfg = copy.deepcopy(default_config)
    _update(cfg, overlay)
    return cfg


def test_the_axis_is_the_engine_alone_unless_more_are_named(default_config):
    assert engine_ids(default_config) == ["llama.cpp-f7cd13301"]
    cfg = _with(default_config, {"experiment": {"engines": ["llama.cpp-0c1e57098", "llama.cpp-f7cd13301"]}})
    assert engine_ids(cfg) == ["llama.cpp-f7cd13301", "llama.cpp-0c1e57098"]  # `engine` first, once
    with pytest.raises(EngineAxisError, match="experiment.engines: 'llama.cpp-b9999' is not defined under engines"):
        engine_ids(_with(default_config, {"experiment": {"engines": ["llama.cpp-b9999"]}}))


def test_the_engines_experiment_runs_every_cell_on_both_engines(default_config):
    cfg = _with(default_config, yaml.safe_load((ROOT / "config/experiments/engines.yaml").read_text()))
    exp = Experiment(cfg, host_device="linux-cpu")
    assert exp.engine_ids == ["llama.cpp-f7cd13301", "llama.cpp-0c1e57098"]
    assert exp.models_engine_id == "llama.cpp-f7cd13301"  # one set of model files for both
    cfg["experiment"]["rounds"]["enabled"] = False
    cells = Experiment(cfg, host_device="linux-cpu").cells("linux-cpu")
    assert len(cells) == 2 * (4 + 4 + 4) and sum("/llama.cpp-0c1e57098/" in c for c in cells) == 12


def test_an_engine_without_the_interleave_program_is_named_before_any_job(default_config):
    cfg = _with(default_config, {"experiment": {"engines": ["llama.cpp-0c1e57098"]}})  # default tg64 interleaves
    with pytest.raises(ConfigError, match="engines.llama.cpp-0c1e57098.targets"):
        Experiment(cfg, host_device="linux-cpu")


def test_a_cell_names_its_engine_only_on_an_axis():
    assert str(Cell("m", "Q4_K_M", "tg64")) == "m/Q4_K_M/tg64"  # one-engine designs keep their ids
    assert str(Cell("m", "Q4_K_M", "tg64", "llama.cpp-0c1e57098")) == "m/Q4_K_M/tg64@llama.cpp-0c1e57098"


def test_an_unreachable_git_engine_is_an_error_naming_the_ref_and_the_fix():
    src = {"kind": "git", "url": "http://127.0.0.1:9/llama.cpp.git", "ref": "b4404"}
    with pytest.raises(EngineAxisError) as e:
        check_git_reachable("llama.cpp-git", src, have_source=False, timeout_s=10)
    assert "git ref 'b4404' of http://127.0.0.1:9/llama.cpp.git cannot be fetched" in str(e.value)
    assert "results/engine/llama.cpp-git/" in str(e.value) and "pypi-sdist" in str(e.value)
    check_git_reachable("llama.cpp-git", src, have_source=True)  # already fetched: no network needed
    check_git_reachable("x", {"kind": "pypi-sdist"}, have_source=False)


def _tree(tmp_path, name, archs):
    src = tmp_path / name / "src"
    src.mkdir(parents=True)
    (src / "llama-arch.cpp").write_text("static const std::map<llm_arch, const char *> LLM_ARCH_NAMES = {\n" + "".join(
        f'    {{ LLM_ARCH_{a.upper().replace("-", "_")}, "{a}" }},\n' for a in archs) + "};\n")
    return tmp_path / name


def test_a_model_newer_than_an_engine_is_named_with_the_engines_that_know_it(tmp_path):
    old = _tree(tmp_path, "old", ["llama", "olmoe"])
    new = _tree(tmp_path, "new", ["llama", "olmoe", "qwen3moe"])
    assert known_architectures(new) == {"llama", "olmoe", "qwen3moe"}
    assert known_architectures(tmp_path / "absent") is None
    check_architectures("new", new, {"olmoe-1b-7b": "olmoe", "qwen3-30b-a3b": "qwen3moe"})
    with pytest.raises(EngineAxisError) as e:
        check_architectures("old", old, {"olmoe-1b-7b": "olmoe", "qwen3-30b-a3b": "qwen3moe"},
                            {"old": known_architectures(old), "new": known_architectures(new)})
    msg = str(e.value)
    assert "engine old does not know the architecture of qwen3-30b-a3b (architecture 'qwen3moe'; known to new)" in msg
    assert "olmoe-1b-7b" not in msg


def test_the_study_engines_know_the_study_architectures():
    for engine in ("llama.cpp-f7cd13301", "llama.cpp-0c1e57098"):
        tree = ROOT / "results/engine" / engine / "source"
        if not tree.is_dir():
            pytest.skip(f"{engine}'s source is not fetched here")
        assert {"llama", "olmoe", "qwen2", "gemma2"} <= known_architectures(tree)


# ---- estimates across engines --------------------------------------------------------------------
def _runs(speed: dict, rounds: int = 8, noise: float = 0.01) -> pd.DataFrame:
    """speed: {(engine, model): tok/s}; each round shares one drift factor across every cell."""
    rng = np.random.default_rng(3)
    rows = []
    for k in range(rounds):
        drift = 1 + 0.1 * np.sin(k)
        for (engine, model), v in speed.items():
            rows.append({"kind": "bench", "device": "d", "engine": engine, "quant": "Q4_K_M", "test": "tg64",
                         "weights_source": "twin", "phase": "tg", "status": "ok", "round": k, "model": model,
                         "model_family": "moe" if model == "olmoe" else "dense",
                         "tokens_per_s": v * drift * (1 + noise * rng.standard_normal())})
    return pd.DataFrame(rows)


def test_speedups_and_the_ratio_change_are_paired_by_round():
    runs = _runs({("old", "olmoe"): 10, ("old", "llama"): 10, ("new", "olmoe"): 12, ("new", "llama"): 10})
    c = C.comparison(runs, "llama", ["old", "new"])
    sp = c["speedup"].set_index("model")
    assert sp.loc["olmoe", "value"] == pytest.approx(1.2, rel=0.03) and sp.loc["llama", "value"] == pytest.approx(1, rel=0.03)
    assert (sp["engine"] == "new").all() and (sp["reference"] == "old").all()
    assert sp.loc["olmoe", "hi"] - sp.loc["olmoe", "lo"] < 0.1  # the shared drift cancels inside rounds
    ch = c["change"].iloc[0]
    assert (ch["model"], ch["reference"], ch["engine"]) == ("olmoe", "llama", "new")
    assert ch["lo"] > 1.1
    assert "olmoe gained" in C.finding(c) and "with new" in C.finding(c)


def test_no_distinguishable_change_is_said_as_such(tmp_path):
    runs = _runs({("old", "olmoe"): 10, ("old", "llama"): 10, ("new", "olmoe"): 11, ("new", "llama"): 11},
                 noise=0.05)
    c = C.comparison(runs, "llama", ["old", "new"])
    assert "no change distinguishable at 95%" in C.finding(c)
    C.write_table(c, tmp_path / "engines.csv", tmp_path / "engines.md")
    md = (tmp_path / "engines.md").read_text()
    assert "Reference engine: old" in md and "change new / old" in md and "rounds-ratio-change" in md


def test_one_engine_has_nothing_to_compare():
    c = C.comparison(_runs({("old", "olmoe"): 10, ("old", "llama"): 10}), "llama", ["old"])
    assert c["speedup"].empty and c["change"].empty
    assert C.finding(c).startswith("One engine")


def test_the_preflight_refuses_an_unreachable_git_engine_before_any_job(default_config):
    from edgemoe.preflight import Job, run_preflight

    cfg = _with(default_config, {
        "engines": {"llama.cpp-b4404": {"source": {"kind": "git", "url": "http://127.0.0.1:9/llama.cpp.git",
                                                   "ref": "b4404"}, "patches": [],
                                        "targets": ["llama-bench", "llama-quantize"]}},
        "experiment": {"engines": ["llama.cpp-b4404"], "tests": [{"name": "tg64", "n_prompt": 0, "n_gen": 64}]}})
    exp = Experiment(cfg, host_device="linux-cpu")
    assert exp.engine_ids == ["llama.cpp-f7cd13301", "llama.cpp-b4404"]
    jobs = [Job("engine_source", {"engine": "llama.cpp-b4404"}), Job("round_cell", {"engine": "llama.cpp-b4404"})]
    with pytest.raises(EngineAxisError, match="engines.llama.cpp-b4404: git ref 'b4404'"):
        run_preflight(exp, jobs, cores=2, settings={"disk": "off", "memory": "off"})
