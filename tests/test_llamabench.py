import pytest
from conftest import FIXTURES

from edgemoe import llamabench


def test_parses_our_engines_jsonl_with_every_repetition():
    rows = llamabench.parse((FIXTURES / "llamacpp/llama-bench-olmoe-tiny-f7cd133.jsonl").read_text())
    assert [llamabench.test_name(r) for r in rows] == ["pp64", "tg16"]
    for r in rows:
        reps = llamabench.repetitions(r)
        assert len(reps) == 3 and all(ns > 0 for ns in reps)
        assert r["n_threads"] == 2 and r["use_mmap"] is True


def test_parses_a_late_2026_csv_by_field_name():
    # A real row from build 10788: new fields (n_depth, n_cpu_moe, load_mode), no use_mmap, no samples.
    (row,) = llamabench.parse((FIXTURES / "llamacpp/llama-bench-olmoe-q4km-b10788.csv").read_text())
    assert row["model_n_params"] == 6919161856
    assert row["model_type"] == "olmoe A1.7B Q4_K - Medium"
    assert llamabench.test_name(row) == "tg64@d60"
    assert llamabench.get(row, "load_mode") == "auto" and llamabench.get(row, "use_mmap") is None
    with pytest.raises(ValueError, match="no samples_ns"):
        llamabench.repetitions(row)


def test_command_passes_every_setting_explicitly():
    cmd = llamabench.command("llama-bench", "m.gguf", 512, 128, 5, 2, 0, use_mmap=False)
    for flag, value in [("-p", "512"), ("-n", "128"), ("-r", "5"), ("-t", "2"), ("-ngl", "0"), ("-mmp", "0"),
                        ("-o", "jsonl")]:
        assert cmd[cmd.index(flag) + 1] == value


def test_json_array_output():
    assert llamabench.parse('[{"n_prompt": 0, "n_gen": 4, "samples_ns": [5, 6]}]')[0]["samples_ns"] == [5, 6]
