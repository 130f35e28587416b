"""Shared test helpers. Unit tests are fast and need no build; tests marked `integration` run the
real pipeline (llama.cpp build included) on tiny shape twins."""
import os
import shutil
import subprocess
import sys
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


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    """A copy of the repository for the integration tier: one per session, so the engine is fetched
    and built once for every test that needs it (tests/test_pipeline.py builds on it in file order).
    EDGEMOE_TEST_WORKDIR reuses a work folder (and its build) between pytest runs while developing."""
    reuse = os.environ.get("EDGEMOE_TEST_WORKDIR")
    work = Path(reuse) if reuse else tmp_path_factory.mktemp("pipeline")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, work / f)
    return work


def snakemake(work, *args, env=None, check=True, timeout=1800):
    """Run the workflow in a work folder (integration tests); a failure shows the end of its output."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "4", *args]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc
