import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT

from edgemoe.records import (
    FIELDS,
    REQUIRED,
    RecordError,
    merge,
    read_jsonl,
    read_parquet,
    write_parquet,
)


def good_row(**over):
    row = {n: None for n, *_ in FIELDS}
    row.update({
        "run_id": "d/e/m/t/Q4_K_M/x/tg/0", "cell_id": "d/e/m/t/Q4_K_M/x", "kind": "bench", "status": "ok",
        "device": "linux-cpu", "backend": "cpu", "engine": "e", "engine_commit": "f7cd133", "patches": "[]",
        "build_flags": "[]", "c_compiler": "gcc", "cxx_compiler": "g++", "model": "m", "model_family": "moe",
        "weights_source": "twin", "is_twin": True, "params_total": 10, "params_active": 5, "quant": "Q4_K_M",
        "gguf_sha256": "ab", "gguf_bytes": 100, "test": "x", "phase": "tg", "n_prompt": 0, "n_gen": 16,
        "n_threads": 2, "n_gpu_layers": 0, "use_mmap": True, "repetition": 0, "n_repetitions": 1,
        "time_ns": 1000, "tokens": 16, "tokens_per_s": 16e6, "memory_ceiling_bytes": 1, "energy_status": "missing",
        "energy_sampler": "none", "cell_start_utc": "t0", "cell_end_utc": "t1", "host_cpu": "cpu",
        "host_logical_cpus": 2, "host_memory_bytes": 1, "host_os": "os", "host_kernel": "k", "host_machine": "x",
        "tool_versions": "{}",
    })
    row.update(over)
    return row


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_round_trip_through_parquet(tmp_path):
    f = write(tmp_path / "a.jsonl", [good_row(), good_row(run_id="r2", repetition=1)])
    table = merge([(str(f), read_jsonl(f))])
    write_parquet(table, tmp_path / "runs.parquet")
    back = read_parquet(tmp_path / "runs.parquet")
    assert back.num_rows == 2 and back.schema.field("tokens_per_s").type == pa.float64()


@pytest.mark.parametrize("over, message", [
    ({"time_ns": -5}, "time_ns must be > 0"),
    ({"tokens": 0}, "tokens must be > 0"),
    ({"gguf_bytes": "100"}, "field 'gguf_bytes' should be int64"),
    ({"model": None}, "required field 'model' is missing"),
    ({"status": "meh"}, "status 'meh'"),
    ({"peak_rss_bytes": -1}, "peak_rss_bytes must not be negative"),
])
def test_bad_rows_are_named_by_file_and_line(tmp_path, over, message):
    f = write(tmp_path / "a.jsonl", [good_row(run_id="ok1"), good_row(**over)])
    with pytest.raises(RecordError) as e:
        read_jsonl(f)
    assert f"{f}:2:" in str(e.value) and message in str(e.value)


def test_failed_cell_needs_no_timing(tmp_path):
    f = write(tmp_path / "a.jsonl", [good_row(status="oom", time_ns=None, tokens=None, tokens_per_s=None,
                                               repetition=None, phase=None)])
    assert read_jsonl(f)[0]["status"] == "oom"


def test_truncated_jsonl_names_the_line(tmp_path):
    text = json.dumps(good_row()) + "\n" + json.dumps(good_row(run_id="b"))[:50]
    (tmp_path / "t.jsonl").write_text(text)
    with pytest.raises(RecordError, match=r"t.jsonl:2: not valid JSON"):
        read_jsonl(tmp_path / "t.jsonl")


def test_truncated_gzip_names_the_file(tmp_path):
    raw = gzip.compress("".join(json.dumps(good_row(run_id=f"r{i}")) + "\n" for i in range(200)).encode())
    (tmp_path / "t.jsonl.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(RecordError, match="t.jsonl.gz"):
        read_jsonl(tmp_path / "t.jsonl.gz")


def test_duplicate_run_ids_across_files_name_both(tmp_path):
    a = write(tmp_path / "a.jsonl", [good_row()])
    b = write(tmp_path / "b.jsonl", [good_row()])
    with pytest.raises(RecordError, match=r"b.jsonl record 1: duplicate run_id .* \(first seen in .*a.jsonl record 1"):
        merge([(str(a), read_jsonl(a)), (str(b), read_jsonl(b))])


def test_parquet_with_a_bad_value_names_the_row(tmp_path):
    rows = [good_row(run_id=f"r{i}") for i in range(3)]
    rows[2]["tokens_per_s"] = -1.0
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(RecordError, match=r"bad.parquet row 2: tokens_per_s must be > 0"):
        read_parquet(tmp_path / "bad.parquet")


def test_every_field_is_documented_in_data_readme():
    readme = (ROOT / "data/README.md").read_text()
    missing = [n for n, *_ in FIELDS if f"`{n}`" not in readme]
    assert not missing, f"data/README.md does not document {missing}: run tools/update_data_readme.py"
    assert set(REQUIRED) <= {n for n, *_ in FIELDS}
