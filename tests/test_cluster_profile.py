"""The Slurm profile (profiles/slurm): a dry run plans every benchmark cell with its node to itself
(--exclusive), its CPUs, memory and GPU explicit, and the Slurm executor plugin turns those
resources into the sbatch call asserted here. No Slurm needed."""
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace


ROOT = Path(__file__).resolve().parents[1]


def dry_run_resources(rule="bench_cell"):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--workflow-profile", "profiles/slurm",
                           "figures/all", "--configfile", "config/smoke.yaml"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "EDGEMOE_HOST_DEVICE": "linux-cpu"}, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    block = proc.stdout.split(f"rule {rule}:", 1)[1].split("\n\n", 1)[0]
    line = re.search(r"resources: (.*)", block).group(1)
    out = {}
    for part in line.split(", "):
        k, v = part.split("=", 1)
        out[k] = int(v) if v.isdigit() else v
    return out


class Resources(dict):
    __getattr__ = dict.get


def test_a_cell_owns_its_node_with_cpus_memory_and_gpu_explicit():
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    res = dry_run_resources()
    assert res["slurm_extra"] == "--exclusive" and res["mem_mb"] >= 100000 and res["cpus_per_task"] >= 2
    assert res["gres"].startswith("gpu:") and res["bench"] == 1
    job = SimpleNamespace(resources=Resources(res), threads=res["cpus_per_task"])
    call = get_submit_command(job, {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c",
                                    "account": "-A acct", "partition": "-p part", "workdir": "/w"})
    call += set_gres_string(job)  # as the plugin's run_job appends it
    for flag in ["--exclusive", f"--mem {res['mem_mb']}", f"--cpus-per-task={res['cpus_per_task']}",
                 f"-t {res['runtime']}", "-A acct", "-p part"]:
        assert flag in call, (flag, call)
    assert f"--gres={res['gres']}" in call, call
