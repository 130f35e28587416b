"""The end-of-run summary (edgemoe.faults) and what a killed model job leaves (edgemoe.models)."""
import json

from edgemoe.faults import FailedJob, summary
from edgemoe.models import _start, stale_temporaries

TRACEBACK = """Traceback (most recent call last):
  File ".snakemake/scripts/tmpabc.converted_model.py", line 15, in <module>
    make_local_gguf(...)
edgemoe.modelcheck.ModelFileError: /data/llama.gguf: truncated: expected 2,471,000,000 bytes, found 1,400,000,000 (...).\
 What to do: copy it again.
"""


def test_nothing_failed_says_nothing(tmp_path):
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps({"cell_id": "c", "status": "ok"}) + "\n")
    assert summary([], [(str(ok), None)]) is None


def test_failed_jobs_and_failed_cells_with_reason_and_log(tmp_path):
    log = tmp_path / "converted_model.log"
    log.write_text(TRACEBACK)
    records = tmp_path / "pp64-tg16.jsonl"
    records.write_text(json.dumps({"cell_id": "linux-cpu/e/olmoe-tiny/twin/Q4_K_M/oom-check", "status": "oom",
                                   "status_reason": "failed to allocate buffer"}) + "\n")
    text = summary([FailedJob("converted_model", {"model": "llama-3.2-1b", "tag": "local-1"}, (str(log),))],
                   [(str(records), str(tmp_path / "pp64-tg16.stderr.log"))])
    print(text)
    lines = text.splitlines()
    assert lines[0] == "Summary of this run's failures (1 job failed, 1 cell recorded as failed):"
    assert lines[1].startswith("  job converted_model (model=llama-3.2-1b, tag=local-1): ModelFileError: "
                               "/data/llama.gguf: truncated: expected 2,471,000,000 bytes")
    assert lines[2] == f"      log: {log}"
    assert lines[3] == "  cell linux-cpu/e/olmoe-tiny/twin/Q4_K_M/oom-check: oom (failed to allocate buffer)"
    assert lines[4] == f"      log: {tmp_path / 'pp64-tg16.stderr.log'}"
    assert "run the same command again" in text


def test_a_job_without_log_output_points_at_snakemakes_error_block():
    text = summary([FailedJob("fidelity", {"device": "linux-cpu"})], [])
    assert "job fidelity (device=linux-cpu): no log output; see Snakemake's error block above" in text


def test_a_killed_model_jobs_temporaries_are_removed_when_it_reruns(tmp_path):
    keep = ["Q4_K_M.gguf", "Q4_K_M.json"]
    left = ["F16.tmp.gguf", ".F16.tmp.gguf.x1y2.tmp", ".Q4_K_M.quantize-tmp.gguf", ".Q4_K_M.gguf.a1b2.tmp"]
    for name in keep + left:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".convert-src-abc").mkdir()
    assert [p.name for p in stale_temporaries(tmp_path)] == sorted(left + [".convert-src-abc"])
    _start(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == keep
