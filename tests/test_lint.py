"""Lint and format, in the fast tier so that a .smk change is checked in seconds, not by the
integration suite: snakemake --lint (findings we accept are listed here, with the reason),
snakefmt --check (settings in pyproject.toml), ruff (pyflakes and syntax errors)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# snakemake --lint findings accepted, and why:
ACCEPTED_LINTS = {
    # Each rule file keeps the input functions of its own rules beside them (cells.smk: one cell
    # shape; rounds.smk: the chain); the logic itself lives in the edgemoe package.
    "Mixed rules and functions in same snakefile.",
}


def run(*cmd):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_snakemake_lint_finds_nothing_but_what_is_accepted():
    proc = run(str(BIN / "snakemake"), "--lint")
    findings = set(re.findall(r"^\s+\* (.+?):?$", proc.stdout + proc.stderr, re.M))
    findings = {f.rstrip(":") for f in findings}
    assert findings <= ACCEPTED_LINTS, proc.stdout[-4000:]


def test_snakefmt_would_change_nothing():
    if not (BIN / "snakefmt").exists():
        pytest.skip("snakefmt is not installed (./setup.sh test installs it)")
    proc = run(str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_finds_nothing():
    if not (BIN / "ruff").exists():
        pytest.skip("ruff is not installed (./setup.sh test installs it)")
    proc = run(str(BIN / "ruff"), "check", "edgemoe", "tests", "tools")
    assert proc.returncode == 0, proc.stdout + proc.stderr
