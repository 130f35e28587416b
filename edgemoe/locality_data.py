"""The locality table (edgemoe.locality_cells makes it, edgemoe.locality analyses it): one row per
(run, prompt, decode step, MoE layer) with the router's top-k ids and their provenance. It lives
beside the run table, never in it: per run a Parquet file under results/locality/, merged into
results/locality.parquet, and a release's locality.jsonl.gz (JSON lines, gzip) that merges the
same way, so the locality table and figure rebuild from released data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# The locality table: one row per (run, prompt, decode step, MoE layer).
SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("device", pa.string()),
        ("backend", pa.string()),
        ("engine", pa.string()),
        ("engine_commit", pa.string()),
        ("patches_sha256", pa.string()),
        ("profiler_sha256", pa.string()),
        ("model", pa.string()),
        ("derived_from", pa.string()),
        ("weights_source", pa.string()),
        ("is_twin", pa.bool_()),
        ("router_skew", pa.float64()),
        ("twin_seed", pa.int64()),
        ("hf_repo", pa.string()),
        ("hf_revision", pa.string()),
        ("quant", pa.string()),
        ("gguf_sha256", pa.string()),
        ("gguf_bytes", pa.int64()),
        ("arch", pa.string()),
        ("n_layer", pa.int64()),
        ("n_expert", pa.int64()),
        ("n_expert_used", pa.int64()),
        ("decode", pa.string()),
        ("prompt_set", pa.string()),
        ("prompt_id", pa.string()),
        ("prompt_kind", pa.string()),
        ("prompt_sha256", pa.string()),
        ("n_prompt_tokens", pa.int64()),
        ("n_gen", pa.int64()),
        ("warmup", pa.int64()),
        ("n_threads", pa.int64()),
        ("run_start_utc", pa.string()),
        ("step", pa.int64()),
        ("pos", pa.int64()),
        ("token", pa.int64()),
        ("layer", pa.int64()),
        ("experts", pa.list_(pa.int32())),
    ]
)
KEY = ["run_id", "prompt_id", "step", "layer"]


def write_table(table: pa.Table, path: Path | str) -> None:
    from edgemoe.files import atomic_path

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: Path | str) -> pa.Table:
    """A locality file: Parquet (a cell, the merged table) or a release's JSON lines (gzip)."""
    path = Path(path)
    if path.name.endswith(".jsonl.gz"):
        rows = []
        with gzip.open(path, "rt") as f:
            for i, line in enumerate(f, start=1):
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise ValueError(f"{path}:{i}: not a locality row ({e})") from None
        try:
            return pa.Table.from_pylist(rows, schema=SCHEMA)
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as e:
            raise ValueError(f"{path}: not locality rows ({e})") from None
    table = pq.read_table(path)
    missing = set(SCHEMA.names) - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: locality columns missing: {sorted(missing)}")
    return table.select(SCHEMA.names).cast(SCHEMA)


def merge(paths_: list[str]) -> pa.Table:
    """Every locality file into one table; a row met twice (a release and the fresh cell it came
    from) is kept once."""
    tables = [read_table(p) for p in paths_]
    if not tables:
        return SCHEMA.empty_table()
    df = pa.concat_tables(tables).to_pandas()
    df = df.drop_duplicates(KEY).sort_values(["model", "decode", "run_id", "prompt_id", "step", "layer"])
    return pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)


def release_rows(table_path: Path | str, dest: Path) -> Path | None:
    """A release's locality rows (dest/locality.jsonl.gz) from the merged table, where it exists."""
    from edgemoe.files import atomic_path

    if not Path(table_path).is_file():
        return None
    out = dest / "locality.jsonl.gz"
    with atomic_path(out) as tmp, gzip.open(tmp, "wt") as f:
        for row in read_table(table_path).to_pylist():
            f.write(json.dumps(row, sort_keys=True) + "\n")
    return out


__all__ = ["KEY", "SCHEMA", "merge", "read_table", "release_rows", "write_table"]
