import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from edgemoe.config import ConfigError, Experiment, check_device_is_here

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config/schema.yaml").read_text())


def test_shipped_configs_pass_the_schema(default_config, smoke_config):
    jsonschema.validate(default_config, SCHEMA)
    jsonschema.validate(smoke_config, SCHEMA)


def test_default_experiment_is_the_study_on_this_host(default_config):
    exp = Experiment(default_config, host_device="linux-cpu")  # whatever host runs the tests
    assert list(exp.models) == ["olmoe-1b-7b", "llama-3.2-1b", "qwen2.5-1.5b", "gemma-2-2b", "olmoe-1b-7b@moe",
                                "olmoe-1b-7b@dense-active", "olmoe-1b-7b@dense-total"]
    assert exp.quants == ["Q4_K_M"] and exp.baseline == "llama-3.2-1b"
    assert exp.device_id == "linux-cpu"
    assert list(exp.tests) == ["tg32", "tg32-effect", "pp128", "pp128-effect"]
    assert exp.tests["tg32"].interleave == 8  # the study models decoding in one process per round
    assert exp.test_models("tg32") == ["olmoe-1b-7b", "llama-3.2-1b", "qwen2.5-1.5b", "gemma-2-2b"]
    assert exp.test_models("tg32-effect") == ["olmoe-1b-7b", "olmoe-1b-7b@moe", "olmoe-1b-7b@dense-active",
                                              "olmoe-1b-7b@dense-total"]  # the MoE effect: base and its family
    assert (exp.tests["tg32-effect"].every, exp.tests["pp128"].every, exp.tests["pp128-effect"].every) == (4, 12, 24)
    assert len(exp.cells("linux-cpu")) == 4 * 4


@pytest.mark.parametrize("path, value", [
    (("experiment", "repetitions"), -1),
    (("experiment", "quants"), ["Q3_FANCY"]),
    (("weights",), "torrent"),
    (("devices", "linux-cpu", "backend"), "tpu"),
])
def test_schema_rejects_bad_values(default_config, path, value):
    cfg = copy.deepcopy(default_config)
    node = cfg
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, SCHEMA)


def test_schema_requires_keys(default_config):
    cfg = copy.deepcopy(default_config)
    del cfg["experiment"]["repetitions"]
    with pytest.raises(jsonschema.ValidationError, match="repetitions"):
        jsonschema.validate(cfg, SCHEMA)


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["experiment"]["models"].append("gpt-5"), "experiment.models: unknown model 'gpt-5'; allowed:"),
    (lambda c: c.update(engine="llama.cpp-nope"), "engine: 'llama.cpp-nope' is not defined"),
    (lambda c: c.update(device="toaster"), "device: 'toaster' is not a device profile; allowed: auto, "),
    (lambda c: c["experiment"].update(baseline="gemma-9b"), "experiment.baseline"),
    (lambda c: c["models"]["olmoe-1b-7b"].update(family="dense"), "models.olmoe-1b-7b.family"),
    (lambda c: c["engines"]["llama.cpp-f7cd13301"].update(patches=["missing.patch"]), "not found under patches/"),
    (lambda c: c["experiment"].update(tests=[{"name": "a", "n_prompt": 0, "n_gen": 0}]), "both 0"),
])
def test_semantic_errors_name_the_key(default_config, mutate, message):
    cfg = copy.deepcopy(default_config)
    mutate(cfg)
    with pytest.raises(ConfigError) as e:
        Experiment(cfg)
    assert message in str(e.value)


def test_another_devices_cells_are_refused_with_the_hosts_device(default_config):
    from edgemoe.host import device_matches

    here = [d for d, p in default_config["devices"].items() if device_matches(p["match"])[0]]
    other = next(d for d in default_config["devices"] if d not in here)
    with pytest.raises(ConfigError) as e:
        check_device_is_here(default_config, other)
    assert f"This host matches {here or 'no profile'}" in str(e.value)
    assert f"--config device={here[0] if here else '<id>'}" in str(e.value)


def test_released_data_resolves_no_device(default_config):
    cfg = copy.deepcopy(default_config)
    for p in cfg["devices"].values():
        p["match"] = {"system": "Plan9"}
    cfg["runs"] = "released"
    exp = Experiment(cfg)
    assert exp.device_id is None and exp.device is None
    cfg["runs"] = "fresh"
    with pytest.raises(ConfigError, match="no profile matching this host"):
        Experiment(cfg)


def test_twin_identity_changes_with_the_spec(default_config):
    a = Experiment(default_config).models["llama-3.2-1b"].weights_tag
    cfg = copy.deepcopy(default_config)
    cfg["models"]["llama-3.2-1b"]["spec"]["n_layer"] = 15
    assert Experiment(cfg).models["llama-3.2-1b"].weights_tag != a


def test_a_test_may_run_some_of_the_models(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["experiment"]["rounds"]["enabled"] = False
    cfg["experiment"]["tests"] = [
        {"name": "tg64", "n_prompt": 0, "n_gen": 64, "models": ["llama-3.2-1b", "olmoe-1b-7b"]},
        {"name": "pp128", "n_prompt": 128, "n_gen": 0}]
    exp = Experiment(cfg, host_device="linux-cpu")
    assert exp.test_models("tg64") == ["olmoe-1b-7b", "llama-3.2-1b"]  # the experiment's order
    assert len(exp.test_models("pp128")) == 7
    assert len(exp.cells("linux-cpu")) == 2 + 7
    cfg["experiment"]["tests"][0]["models"] = ["olmoe-1b-7b", "mixtral"]
    with pytest.raises(ConfigError, match=r"experiment.tests\[tg64\].models: 'mixtral' not among the experiment's"):
        Experiment(cfg, host_device="linux-cpu")
