"""Tiny twins of the MoE families (edgemoe/architectures_moe.py) through the workflow (integration
tier): written by the pipeline's twin rule at Q4_K_M, then loaded and run by the study engine's own
llama-bench, which must count exactly the spec's parameters."""

import csv
import io
import json
import subprocess

import pytest
import yaml
from conftest import snakemake

from edgemoe.architectures import ArchSpec
from edgemoe.experiment_types import content_hash
from edgemoe.twins import GENERATOR_VERSION

pytestmark = pytest.mark.integration
FAMILIES = ["--configfile", "config/smoke.yaml", "tests/moe-families-smoke.yaml"]
ENGINE = "results/engine/llama.cpp-f7cd13301"


def _targets(work) -> dict[str, str]:
    models = yaml.safe_load((work / "tests/moe-families-smoke.yaml").read_text())["models"]
    out = {}
    for m, v in models.items():
        tag = f"twin-s{v['twin']['seed']}-{content_hash([v['spec'], v['twin'].get('router_skew', 0), GENERATOR_VERSION])[:8]}"
        out[m] = f"results/models/{m}/{tag}/Q4_K_M.gguf"
    return out


@pytest.fixture(scope="module")
def family_twins(work):
    targets = _targets(work)
    snakemake(work, *targets.values(), *FAMILIES)
    return targets


@pytest.mark.parametrize("model", ["granitemoe-tiny", "granite-tiny", "qwen2moe-tiny", "deepseek2-tiny"])
def test_the_study_engine_loads_and_runs_each_family_twin(work, family_twins, model):
    spec_cfg = yaml.safe_load((work / "tests/moe-families-smoke.yaml").read_text())["models"][model]["spec"]
    spec = ArchSpec.from_config(model, spec_cfg)
    gguf = work / family_twins[model]
    info = json.loads(gguf.with_suffix(".json").read_text())
    assert info["params_total"] == spec.total_params() and info["params_active"] == spec.active_params()
    proc = subprocess.run([str(work / ENGINE / "build/tools/bin/llama-bench"), "-m", str(gguf), "-p", "16", "-n", "8",
                           "-t", "2", "-r", "1", "-o", "csv"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert {r["n_gen"] for r in rows} == {"0", "8"}
    assert all(int(r["model_n_params"]) == spec.total_params() for r in rows)
    assert all(float(r["avg_ts"]) > 0 for r in rows)
    assert rows[0]["model_type"].split()[0] == spec.arch
