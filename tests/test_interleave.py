"""Interleaved decode (edgemoe/interleave.py): the program's output read (a real capture from the
engine we build), settings checked before any job, a round cell's records from a replaying
program, failures as failed records naming what was missing (end to end:
tests/test_pipeline_interleave.py)."""
import pandas as pd
import pytest

from conftest import FIXTURES
from edgemoe import interleave
from test_depth import program, spec

CAPTURE = FIXTURES / "llamacpp" / "edgemoe-interleave-tiny.jsonl"  # 4 tiny twins, tg8 in turns of 4, -r 2


def test_a_real_capture_parses_into_models_blocks_and_its_closing_line():
    models, blocks, done = interleave.parse(CAPTURE.read_text())
    assert [m["index"] for m in models] == [0, 1, 2, 3] and models[0]["build_commit"] == "f7cd133"
    assert len(blocks) == 4 * 2 * 2 and done == {"event": "done", "models": 4, "repetitions": 2, "warmup": 0,
                                                 "n_gen": 8, "block": 4}
    # turns alternate direction: the second turn's order is the first's reversed
    first = [b["model"] for b in blocks[:4]]
    assert [b["model"] for b in blocks[4:8]] == first[::-1]
    assert interleave.incomplete_reason(4, blocks, done, n_gen=8, block=4, repetitions=2) is None


def test_a_truncated_output_is_incomplete_and_says_what_is_missing():
    lines = CAPTURE.read_text().splitlines(keepends=True)
    models, blocks, done = interleave.parse("".join(lines[:-3]))
    assert done is None
    assert interleave.incomplete_reason(4, blocks, done, 8, 4, 2) == "edgemoe-interleave printed 14 of 16 blocks"
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        interleave.parse(lines[0] + '{"event": "model", "index": 1,\n')


def test_the_command_passes_every_setting_and_model():
    cmd = interleave.command("x", ["a.gguf", "b.gguf"], 64, 16, 3, [1, 0], 2, 0, True)
    assert cmd[:5] == ["x", "-m", "a.gguf", "-m", "b.gguf"]
    joined = " ".join(cmd)
    for part in ("-n 64", "--block 16", "-r 3", "--order 1,0", "-t 2", "-ngl 0", "-mmp 1", "--warmup 0"):
        assert part in joined


@pytest.mark.parametrize("test, settings, message", [
    ({"name": "pp", "n_prompt": 16, "n_gen": 0, "interleave": 4}, {}, r"experiment.tests\[0\] \(pp\): .*decode-only"),
    ({"name": "tg", "n_prompt": 0, "n_gen": 10, "interleave": 4}, {}, "n_gen 10 is not a multiple of interleave 4"),
    ({"name": "tg", "n_prompt": 0, "n_gen": 8, "interleave": 4}, {"rounds_enabled": False}, "needs the rounds design"),
    ({"name": "tg", "n_prompt": 0, "n_gen": 8, "interleave": 4}, {"regimes_on": True}, "experiment.regimes"),
    ({"name": "tg", "n_prompt": 0, "n_gen": 8, "interleave": 4}, {"targets": ["llama-bench"]},
     r"edgemoe-interleave in engines.e.targets"),
])
def test_an_interleaved_test_the_config_cannot_run_is_named_before_any_job(test, settings, message):
    kw = {"rounds_enabled": True, "regimes_on": False, "engine_id": "e", "targets": [interleave.PROGRAM], **settings}
    with pytest.raises(interleave.InterleaveError, match=message):
        interleave.check_settings([test], **kw)


def test_models_that_do_not_fit_together_are_refused_with_their_sizes():
    interleave.check_fits({"a": 4e9, "b": 1e9}, int(8e9), "dev", "tg64")
    with pytest.raises(interleave.InterleaveError, match=r"9.0 GB \(a 4.00 GB, b 5.00 GB\).*device dev's 8.0 GB"):
        interleave.check_fits({"a": 4e9, "b": 5e9}, int(8e9), "dev", "tg64")


REPLAY = """
import sys
sys.stdout.write(open({capture!r}).read()[:{cut}])
sys.exit({code})
"""


def _cell(tmp_path, cut=None, code=0):
    exe = program(tmp_path / "edgemoe-interleave",
                  REPLAY.format(capture=str(CAPTURE), cut=cut if cut is not None else "None", code=code))
    specs = [spec(tmp_path, exe, "tg8") for _ in range(4)]
    for i, s in enumerate(specs):
        s.repetitions, s.cell_id = 2, f"dev/e/m{i}/t/Q4_K_M/tg8/r001"
    return interleave.run_interleaved_cell(specs, 4, [0, 1, 2, 3], tmp_path / "raw.jsonl", tmp_path / "err.log",
                                           tmp_path / "lock")


def test_a_round_cell_gives_one_record_per_model_and_repetition_from_its_turns(tmp_path):
    records = _cell(tmp_path)
    assert len(records) == 8 and {r["status"] for r in records} == {"ok"}
    _, blocks, _ = interleave.parse(CAPTURE.read_text())
    r = next(r for r in records if r["interleave_position"] == 2 and r["repetition"] == 1)
    mine = [b for b in blocks if b["model"] == 2 and b["repetition"] == 1]
    assert r["time_ns"] == sum(b["t_end_ns"] - b["t_start_ns"] for b in mine)
    assert r["tokens_per_s"] == pytest.approx(8 / (r["time_ns"] / 1e9))
    assert r["program"] == "edgemoe-interleave" and r["interleave_block"] == 4 and r["interleave_models"] == 4
    assert r["peak_rss_bytes"] is None and r["process_peak_rss_bytes"] > 0
    assert len({r["run_id"] for r in records}) == 8


LINE_CUT = -len("".join(CAPTURE.read_text().splitlines(keepends=True)[-3:]))  # the last two turns and "done"


@pytest.mark.parametrize("cut, code, reason", [
    (LINE_CUT, 0, "printed 14 of 16 blocks"),
    (-40, 0, "output line 21 is not JSON"),  # cut inside the closing line
    (None, 3, "exit code 3"),
])
def test_a_cut_or_failed_run_is_a_crash_record_per_model_naming_why(tmp_path, cut, code, reason):
    records = _cell(tmp_path, cut, code)
    assert len(records) == 4 and {r["status"] for r in records} == {"crash"}
    assert all(pd.Series([r["status_reason"] for r in records]).str.contains(reason))
