"""What a device's snapshot holds and how a union reads it (edgemoe/store.py moves the bytes).

A push takes the device's run-record files (block cells, profile and depth cells, or the rounds'
closing files, which list their round records and decisions), each record's siblings (raw engine
output, stderr log, summary), the device's bandwidth, build-info and the sidecars of the model
files its cells used. A union fetches each listed device's latest snapshot under
results/union/<device>/<snapshot>/ (the work-folder paths kept) and reads the records from there.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Iterable

from edgemoe import paths
from edgemoe.files import atomic_write_json, sha256_file
from edgemoe.host import host_facts
from edgemoe.records import read_jsonl
from edgemoe.release import record_kinds

UNION_DIR = f"{paths.RESULTS}/union"
UNION_SUMMARY = paths.UNION_SUMMARY


def fetched(device: str, snapshot: str) -> str:
    """The fetched snapshot's manifest (written last by edgemoe.store.fetch)."""
    return f"{UNION_DIR}/{device}/{snapshot}/snapshot.json"


def pushed(device: str) -> str:
    """This work folder's receipt of its device's latest push."""
    return f"{paths.RESULTS}/store/{device}/pushed.json"


def siblings(record: str | Path) -> list[Path]:
    """A record file's companions: <stem>.<anything> regular files beside it (raw output, stderr log)."""
    p = Path(record)
    stem = p.name[:-len(".jsonl")] if p.name.endswith(".jsonl") else p.stem
    return sorted(q for q in p.parent.glob(f"{stem}.*") if q.is_file() and q != p)


def push_files(records: Iterable[str], rounds_done: Iterable[str], context: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """({work-folder path: local path} of every file to push, the record paths among them).
    rounds_done: the rounds' closing files (edgemoe.paths.rounds_done), whose lists are followed."""
    recs = list(records)
    extra = list(context)
    for done in rounds_done:
        d = json.loads(Path(done).read_text())
        recs += d["records"]
        extra += [done, *d.get("decisions", [])]
    files = {}
    for r in recs:
        files[r] = r
        files.update({str(s): str(s) for s in siblings(r)})
    files.update({e: e for e in extra if Path(e).is_file()})
    missing = sorted(p for p in files if not Path(p).is_file())
    if missing:
        raise FileNotFoundError(f"push: {len(missing)} files to push are missing, e.g. {missing[:3]}")
    return files, sorted(set(recs))


def git_state(root: str | Path = ".") -> dict[str, Any]:
    """The workflow's commit and whether tracked files differ from it (None where not a git tree)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def manifest_meta(records: list[str], config_sha256: str, design: str | None) -> dict[str, Any]:
    """Host facts, workflow state, hashes, tool versions and the records' kinds (what a union needs to
    plan its figures before it has fetched anything)."""
    import boto3

    rows = [r for rec in records for r in read_jsonl(rec)]
    return {"host": host_facts(), "workflow": git_state(), "config_sha256": config_sha256, "design": design,
            "kinds": sorted(record_kinds(rows)), "rows": len(rows), "tool": f"boto3 {boto3.__version__}"}


def union_records(snapshot_files: Iterable[str]) -> list[str]:
    """The local record paths of fetched snapshots (their manifests' records, under each snapshot's folder)."""
    out = []
    for f in snapshot_files:
        manifest = json.loads(Path(f).read_text())
        out += [str(Path(f).parent / r) for r in manifest["records"]]
    return out


def write_union_summary(path: str | Path, snapshot_files: Iterable[str], run_table: str | Path) -> dict[str, Any]:
    """results/union.json: each device's snapshot (id, pushed commit, dirty) and the run table's sha256,
    so that a release made from this run table names the snapshots (edgemoe.release)."""
    devices = {}
    for f in snapshot_files:
        m = json.loads(Path(f).read_text())
        devices[m["device"]] = {"snapshot": m["snapshot"], "previous": m.get("previous"),
                                "commit": (m.get("workflow") or {}).get("commit"),
                                "dirty": (m.get("workflow") or {}).get("dirty"), "rows": m.get("rows")}
    summary = {"run_table_sha256": sha256_file(run_table), "devices": devices}
    atomic_write_json(path, summary)
    return summary


def with_snapshots(prov, snapshots: dict[str, str]):
    """The provenance table with each device's snapshot id (runs=union)."""
    if snapshots:
        prov = prov.copy()
        prov.insert(1, "snapshot", prov["device"].map(snapshots))
    return prov
