"""Publish a run table as a release: data/released/<id>/runs.jsonl.gz and a README that says what
was measured, where, with what and when. No rule writes there, so a release is never rebuilt.

    python -m edgemoe.release results/runs.parquet data/released/<release-id>
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from edgemoe.files import atomic_path, atomic_write_text, sha256_file
from edgemoe.records import read_parquet
from edgemoe.estimates import in_rounds


def model_kinds(model_ids) -> set[str]:
    """'counterfactual' where a model is a counterfactual twin (M@...), 'sweep' where one is a
    sweep member (M@E<e>k<j>): the MoE-effect table and figures need them."""
    import re

    kinds = set()
    for m in model_ids:
        if "@" in m:
            kinds.add("counterfactual")
        if re.search(r"@E\d+k\d+$", m):
            kinds.add("sweep")
    return kinds


def record_kinds(rows) -> set[str]:
    """What run records hold, for the DAG to build only the figures it has data for: their record
    kinds (bench, profile, depth), 'rounds' where bench rows carry a round, 'regimes' where they ran in
    a memory cgroup, 'engines' where bench rows come from more than one engine, and model_kinds."""
    kinds, engines = set(), set()
    for r in rows:
        kinds.add(r["kind"])
        if r["kind"] == "bench" and r.get("round") is not None:
            kinds.add("rounds")
        kinds |= model_kinds([r["model"]]) if r["kind"] == "bench" else set()
        engines |= {r.get("engine")} if r["kind"] == "bench" else set()
        if r["kind"] == "bench" and r.get("cgroup_version") is not None:
            kinds.add("regimes")  # cells under an emulated memory ceiling (edgemoe/regimes.py)
    return kinds | ({"engines"} if len(engines - {None}) > 1 else set())


def data_kinds(path: Path | str) -> set[str]:
    """What a release holds (record_kinds of a scan of the file: releases are kilobytes)."""
    n = [0]

    def rows(f):
        for n[0], line in enumerate(f, start=1):
            yield json.loads(line)

    try:
        with gzip.open(path, "rt") as f:
            return record_kinds(rows(f))
    except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}:{n[0] + 1}: not a release's run records ({type(e).__name__}: {e}); "
                         "restore the release from git (git checkout -- data/released)") from None


def describe(runs) -> str:
    """The README's facts, from the table itself."""
    lines = []
    for device, d in runs.groupby("device"):
        first = d.iloc[0]
        lines += [
            f"- device `{device}` ({first['backend']}): {first['host_cpu']}, {first['host_logical_cpus']} logical "
            f"CPUs, {first['host_memory_bytes'] / 2**30:.0f} GiB, {first['host_os']} (kernel {first['host_kernel']})",
            f"  - engine `{first['engine']}`: llama.cpp {first['engine_commit']}, patches sha256 "
            f"`{first['patches_sha256'] or 'none'}`, {first['cxx_compiler']}, flags {first['build_flags']}",
            f"  - models: {', '.join(sorted(d['model'].unique()))}; weights: {', '.join(sorted(d['weights_source'].unique()))};"
            f" quants: {', '.join(sorted(d['quant'].unique()))}; tests: {', '.join(sorted(d['test'].unique()))}",
            f"  - {d['cell_id'].nunique()} cells, {len(d)} rows, statuses "
            f"{d.groupby('status').size().to_dict()}, measured {d['cell_start_utc'].min()} to {d['cell_end_utc'].max()}",
        ]
    return "\n".join(lines)


LOCALITY_NOTE = """`locality.jsonl.gz`: expert-locality rows (edgemoe/locality_data.py), one per (run, prompt,
decode step, MoE layer) with the router's top-k ids, what was decoded and the model file's hash;
the locality table and figure rebuild from them. A twin's routing is random weights' routing.
"""


def union_note(run_table: str | Path) -> str:
    """A release's paragraph naming the snapshots its run table was built from ('' when it was not a union)."""
    f = Path(run_table).with_name("union.json")
    if not f.is_file():
        return ""
    s = json.loads(f.read_text())
    if s.get("run_table_sha256") != sha256_file(run_table):
        return ""  # an older union's summary: this run table is another one
    lines = [f"- `{d}`: snapshot `{x['snapshot']}` (workflow {x['commit'] or 'unknown'}"
             f"{', dirty tree' if x['dirty'] else ''})" for d, x in sorted(s["devices"].items())]
    return "Built with `runs=union` from these per-device snapshots:\n" + "\n".join(lines) + "\n"


def release(parquet: Path, dest: Path, note: str = "") -> Path:
    table = read_parquet(parquet)
    runs = table.to_pandas()
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / "runs.jsonl.gz"
    with atomic_path(out) as tmp:
        with gzip.open(tmp, "wt") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row, sort_keys=True) + "\n")
    # Expert-locality rows (edgemoe.locality_data) live beside the run table, never in it.
    from edgemoe.locality_data import release_rows

    locality = release_rows(Path(parquet).with_name("locality.parquet"), dest)
    rounds = in_rounds(runs)
    design = ("Cells ran in rounds (every cell once per round, order drawn per round from a recorded "
              "seed); tables give medians of round medians and ratios paired inside rounds, with "
              "distribution-free 95% order-statistic intervals over rounds." if rounds else
              "Each cell's repetitions ran in one block; intervals are 95% percentile-bootstrap "
              "intervals of the median.")
    readme = f"""# Release {dest.name}

Per-run records (one JSON object per line, gzip; fields: data/README.md) from which
`snakemake --cores 1 figures/all --config runs=released release={dest.name}` rebuilds every table
and figure with no build and no benchmark.

{note}

{union_note(parquet)}
## What, where, when (read from the records)
{describe(runs)}

## How measured
llama-bench (`-o jsonl`, every repetition's time kept), one cell at a time with nothing else
scheduled beside it; threads, GPU layers and weight-loading mode explicit; peak RSS of the
benchmark process by os.wait4. {design}
`is_twin` rows come from shape twins: the real models' architecture and sizes, random weights.
{LOCALITY_NOTE if locality else ""}

## Licence
The records are released under CC BY 4.0.
"""
    atomic_write_text(dest / "README.md", readme)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, help="results/runs.parquet")
    ap.add_argument("dest", type=Path, help="data/released/<release-id>")
    ap.add_argument("--note", default="", help="a paragraph for the README (context, caveats)")
    a = ap.parse_args(argv)
    print(release(a.runs, a.dest, a.note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
