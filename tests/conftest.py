"""Shared test helpers. Unit tests are fast and need no build; tests marked `integration` run the
real pipeline (llama.cpp build included) on tiny shape twins."""
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def default_config():
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


@pytest.fixture(scope="session")
def smoke_config(default_config):
    """config.yaml with smoke.yaml over it, merged the way Snakemake merges --configfile."""
    import copy

    cfg = copy.deepcopy(default_config)
    _update(cfg, yaml.safe_load((ROOT / "config/smoke.yaml").read_text()))
    return cfg


def _update(base, new):
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _update(base[k], v)
        else:
            base[k] = v
