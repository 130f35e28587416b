"""Fast DAG checks (no build, no benchmark): every shipped config plans, the released path plans
with no device, and the package has no import circle."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [[]] + [["--configfile", str(p.relative_to(ROOT))] for p in sorted((ROOT / "config").glob("*.yaml"))
                  if p.name not in ("config.yaml", "schema.yaml")] + \
          [["--configfile", str(p.relative_to(ROOT))] for p in sorted((ROOT / "config/experiments").glob("*.yaml"))]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--cores", "4", "-n"]
ENV = {**os.environ, "EDGEMOE_HOST_DEVICE": "linux-cpu"}  # plan as the CPU profile, whatever this host is


def dry_run(*args, target="figures/all"):
    return subprocess.run([*SNAKEMAKE, target, *args, "--quiet", "rules"], cwd=ROOT, capture_output=True, text=True, env=ENV,
                          timeout=120)


@pytest.mark.parametrize("args", CONFIGS, ids=lambda a: a[-1] if a else "config.yaml")
def test_every_config_plans(args):
    proc = dry_run(*args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_released_data_plans_no_measuring_rule_and_needs_no_device():
    env = {k: v for k, v in os.environ.items() if k != "EDGEMOE_HOST_DEVICE"}
    proc = subprocess.run([*SNAKEMAKE, "--forceall", "figures/all", "--config", "runs=released",
                           "--configfile", "tests/configs/no-matching-device.yaml"], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for rule in ("engine_build", "twin_model", "bench_cell", "round_cell", "profile_cell", "bandwidth"):
        assert f"rule {rule}:" not in out and f"{rule} " not in out.split("Job stats")[-1]
    assert "figure_drift" in out  # the default release is in rounds: its drift figure rebuilds


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgemoe"):
            out.add(node.module if node.module != "edgemoe" else f"edgemoe.{node.names[0].name}")
            if node.module == "edgemoe":
                out |= {f"edgemoe.{n.name}" for n in node.names}
        elif isinstance(node, ast.Import):
            out |= {n.name for n in node.names if n.name.startswith("edgemoe.")}
    return out - {"edgemoe"}


def test_the_package_has_no_import_circle():
    """Every import of edgemoe modules (top level or inside functions) forms a DAG."""
    graph = {f"edgemoe.{p.stem}": _imports(p) for p in (ROOT / "edgemoe").glob("*.py") if p.stem != "__init__"}
    done, stack = set(), []

    def visit(m):
        if m in stack:
            raise AssertionError("import circle: " + " -> ".join(stack[stack.index(m):] + [m]))
        if m in done or m not in graph:
            return
        stack.append(m)
        for n in sorted(graph[m]):
            visit(n)
        stack.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)


def test_no_module_is_over_400_lines_but_the_known_ones():
    known = set()
    big = {p.stem: len(p.read_text().splitlines()) for p in (ROOT / "edgemoe").glob("*.py")}
    assert {m for m, n in big.items() if n > 400} <= known, big
