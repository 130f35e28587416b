"""Write envs/*.yaml (conda environments for `snakemake --sdm conda`) from pyproject.toml, so the
pins cannot drift: the analysis environment (tables and figures) and the pipeline environment
(builds, model files, cells). tests/test_envs.py fails when a file differs from what this writes.

    python tools/make_envs.py
"""
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "# Written by tools/make_envs.py from pyproject.toml; do not edit by hand.\n"
# What setup.sh installs with apt for the pipeline, from conda-forge here.
BUILD_TOOLS = ["cmake", "make", "cxx-compiler", "patch", "ccache"]


def environments() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python = project["requires-python"].removeprefix(">=")
    core = project["dependencies"]
    extras = project["optional-dependencies"]
    snakemake = {"snakemake", "pygments"}  # the workflow runs in Snakemake's own environment
    out = {}
    for name, deps, tools in (("analysis", core, []), ("pipeline", core + extras["pipeline"], BUILD_TOOLS)):
        pins = [d for d in deps if d.split("=")[0].split(">")[0] not in snakemake]
        lines = [HEADER, f"name: edgemoe-{name}\n", "channels: [conda-forge, nodefaults]\n", "dependencies:\n",
                 f"  - python={python}\n", "  - pip\n", *[f"  - {t}\n" for t in tools], "  - pip:\n",
                 *[f"      - {p}\n" for p in pins], "      - -e ..  # the edgemoe package (this repository)\n"]
        out[f"envs/{name}.yaml"] = "".join(lines)
    return out


if __name__ == "__main__":
    for path, text in environments().items():
        (ROOT / path).write_text(text)
        print(path)
    sys.exit(0)
